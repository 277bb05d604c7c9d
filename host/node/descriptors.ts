/**
 * Which of the host's descriptors a spawned child would inherit. Node opens its own with O_CLOEXEC,
 * but a descriptor the host process itself inherited without it (from a shell, a supervisor, a test
 * runner) passes through sh, setpriv, prlimit and bwrap into the sandbox's Node process, where the job
 * could read or write it. bwrap has no option to close them and dash cannot name descriptors above 9,
 * so the spawn overlays each one with /dev/null instead (see SandboxJob#spawn).
 */
import { readdirSync, readFileSync } from "node:fs";

const O_CLOEXEC = 0o2000000;

/** Host descriptors at or above `from` that are open without O_CLOEXEC. */
export function inheritableDescriptors(from: number): number[] {
  let entries: string[];
  try {
    entries = readdirSync("/proc/self/fd");
  } catch {
    return [];
  }
  const found: number[] = [];
  for (const entry of entries) {
    const fd = Number(entry);
    if (!Number.isInteger(fd) || fd < from) continue;
    try {
      const flags = /^flags:\s*([0-7]+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"))?.[1];
      if (flags !== undefined && (parseInt(flags, 8) & O_CLOEXEC) === 0) found.push(fd);
    } catch {
      // closed while we looked (readdir's own descriptor is one of these)
    }
  }
  return found.sort((a, b) => a - b);
}
