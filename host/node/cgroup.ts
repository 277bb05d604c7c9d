/**
 * Per-job cgroups (v1 controllers: memory, pids, cpuacct), created under the host's own cgroup so a
 * delegated host never writes outside what it was given.
 *
 * The kernel does the enforcing: memory.limit_in_bytes (and memsw, so swap is no way out) triggers
 * the OOM killer inside the job's group only; pids.max makes fork/clone fail with EAGAIN. The host
 * reads the counters afterwards (oom_kill, pids.events, max_usage_in_bytes, cpuacct.usage) to say
 * which limit fired. cgroupfs files are kernel pseudo-files, so they are read and written
 * synchronously: each access is microseconds and never touches a disk.
 *
 * Any controller that is not mounted as v1, or whose directory the host may not write (not root, not
 * delegated), is simply absent; the runner then falls back to rlimits (see README.md).
 */
import {
  accessSync,
  constants,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";

const MOUNT_ROOT = "/sys/fs/cgroup";
const GROUP_DIR = "cordon-node";
/** Killing a group is SIGKILL to every member, repeated until cgroup.procs is empty (a fork may race). */
const KILL_ROUNDS = 50;
const KILL_ROUND_MS = 10;
const REMOVE_ROUNDS = 100;
const REMOVE_ROUND_MS = 5;

type Controller = "memory" | "pids" | "cpuacct";
const CONTROLLERS: readonly Controller[] = ["memory", "pids", "cpuacct"];

export interface CgroupLimits {
  memoryBytes: number;
  /** Tasks (threads count: the kernel charges every task to pids.max). */
  maxTasks: number;
}

export interface CgroupCounters {
  peakMemoryBytes: number | undefined;
  cpuNs: number | undefined;
  oomKills: number;
  /** Times a fork/clone in the group failed because of pids.max. */
  pidsRefused: number;
}

/** Where each available controller's parent directory for job groups lives. */
export class CgroupRoot {
  readonly #parents: ReadonlyMap<Controller, string>;

  private constructor(parents: Map<Controller, string>) {
    this.#parents = parents;
  }

  static none(): CgroupRoot {
    return new CgroupRoot(new Map());
  }

  /** Finds the v1 controllers this process may create groups under; never throws. */
  static detect(procSelfCgroup = "/proc/self/cgroup"): CgroupRoot {
    const parents = new Map<Controller, string>();
    let membership: string;
    try {
      membership = readFileSync(procSelfCgroup, "utf8");
    } catch {
      return new CgroupRoot(parents);
    }
    for (const line of membership.split("\n")) {
      // v1 lines look like "4:memory:/some/path"; v2's single line is "0::/path" and is skipped.
      const [, list, path] = line.split(":", 3);
      if (!list || path === undefined) continue;
      for (const name of list.split(",")) {
        const controller = CONTROLLERS.find((c) => c === name);
        if (!controller) continue;
        const mount = controller === "cpuacct" ? cpuacctMount() : join(MOUNT_ROOT, controller);
        if (!mount) continue;
        const parent = join(mount, path, GROUP_DIR);
        try {
          mkdirSync(parent, { recursive: true });
          // An existing directory is no proof: another user (root) may have made it.
          accessSync(parent, constants.W_OK);
          parents.set(controller, parent);
        } catch {
          // Not ours to write: this controller is unavailable.
        }
      }
    }
    return new CgroupRoot(parents);
  }

  has(controller: Controller): boolean {
    return this.#parents.has(controller);
  }

  /**
   * Removes job groups that a host which died (SIGKILL, a crash) left behind: empty ones older than
   * `minAgeMs`. Safe when another host shares the parent: a live sandbox is in its group from its first
   * process on (a group is empty only between its creation and that process joining it), and rmdir
   * refuses a group that has members anyway. Warm sandboxes make such leftovers likelier (a host that
   * dies leaves one group per waiting sandbox).
   */
  sweep(minAgeMs: number): void {
    const now = Date.now();
    for (const parent of this.#parents.values()) {
      let names: string[];
      try {
        names = readdirSync(parent).filter((name) => name.startsWith("job-"));
      } catch {
        continue;
      }
      for (const name of names) {
        const dir = join(parent, name);
        try {
          if (now - statSync(dir).mtimeMs < minAgeMs || readLines(join(dir, "cgroup.procs")).length > 0) continue;
          rmdirSync(dir);
        } catch {
          // In use, or removed by someone else meanwhile.
        }
      }
    }
  }

  get controllers(): Controller[] {
    return [...this.#parents.keys()];
  }

  /** A fresh group in every available controller, with the limits written before anyone joins it. */
  create(limits: CgroupLimits): JobCgroup {
    const name = `job-${randomBytes(8).toString("hex")}`;
    const dirs = new Map<Controller, string>();
    const group = new JobCgroup(dirs);
    try {
      for (const [controller, parent] of this.#parents) {
        const dir = join(parent, name);
        mkdirSync(dir);
        dirs.set(controller, dir);
      }
      const memory = dirs.get("memory");
      if (memory) {
        writeFileSync(join(memory, "memory.limit_in_bytes"), String(limits.memoryBytes));
        // memsw exists only with swap accounting; it must not be below limit_in_bytes, hence the order.
        const memsw = join(memory, "memory.memsw.limit_in_bytes");
        if (existsSync(memsw)) writeFileSync(memsw, String(limits.memoryBytes));
      }
      const pids = dirs.get("pids");
      if (pids) writeFileSync(join(pids, "pids.max"), String(limits.maxTasks));
    } catch (error) {
      void group.remove();
      throw error;
    }
    return group;
  }
}

export class JobCgroup {
  readonly #dirs: ReadonlyMap<Controller, string>;

  constructor(dirs: ReadonlyMap<Controller, string>) {
    this.#dirs = dirs;
  }

  /** Directories whose cgroup.procs the sandbox's first process writes itself into. */
  get directories(): string[] {
    return [...this.#dirs.values()];
  }

  has(controller: Controller): boolean {
    return this.#dirs.has(controller);
  }

  /** Sets pids.max on a live group (a warm sandbox's, at hand-off); false if it could not be written. */
  setMaxTasks(maxTasks: number): boolean {
    const pids = this.#dirs.get("pids");
    if (!pids) return false;
    try {
      writeFileSync(join(pids, "pids.max"), String(maxTasks));
      return true;
    } catch {
      return false;
    }
  }

  cpuNs(): number | undefined {
    const dir = this.#dirs.get("cpuacct");
    return dir ? readNumber(join(dir, "cpuacct.usage")) : undefined;
  }

  counters(): CgroupCounters {
    const memory = this.#dirs.get("memory");
    const pids = this.#dirs.get("pids");
    return {
      peakMemoryBytes: memory ? readNumber(join(memory, "memory.max_usage_in_bytes")) : undefined,
      cpuNs: this.cpuNs(),
      oomKills: memory ? (readKeyed(join(memory, "memory.oom_control"), "oom_kill") ?? 0) : 0,
      pidsRefused: pids ? (readKeyed(join(pids, "pids.events"), "max") ?? 0) : 0,
    };
  }

  /** Host pids of every task still in the group. */
  members(): number[] {
    const found = new Set<number>();
    for (const dir of this.#dirs.values()) {
      for (const pid of readLines(join(dir, "cgroup.procs"))) found.add(pid);
    }
    return [...found];
  }

  /** SIGKILLs every member until the group is empty; true if it emptied. */
  async killAll(): Promise<boolean> {
    for (let round = 0; round < KILL_ROUNDS; round++) {
      const members = this.members();
      if (members.length === 0) return true;
      for (const pid of members) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // Already gone.
        }
      }
      await sleep(KILL_ROUND_MS);
    }
    return this.members().length === 0;
  }

  /**
   * The same, synchronously, for a host that is exiting: SIGKILLs the members and retries the rmdirs
   * until `deadline` (Date.now() ms); false if a directory is still there.
   */
  removeSync(deadline: number): boolean {
    const pause = new Int32Array(new SharedArrayBuffer(4));
    for (;;) {
      for (const pid of this.members()) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // Already gone.
        }
      }
      let left = 0;
      for (const dir of this.#dirs.values()) {
        try {
          rmdirSync(dir);
        } catch (error) {
          if (!isCode(error, "ENOENT")) left++;
        }
      }
      if (left === 0) return true;
      if (Date.now() >= deadline) return false;
      Atomics.wait(pause, 0, 0, REMOVE_ROUND_MS);
    }
  }

  /** Removes the group's directories (an rmdir fails while a dying task is still listed; retried). */
  async remove(): Promise<void> {
    for (const dir of this.#dirs.values()) {
      for (let round = 0; round < REMOVE_ROUNDS; round++) {
        try {
          rmdirSync(dir);
          break;
        } catch (error) {
          if (isCode(error, "ENOENT")) break;
          await sleep(REMOVE_ROUND_MS);
        }
      }
    }
  }
}

function cpuacctMount(): string | undefined {
  // cpuacct is often co-mounted with cpu ("cpu,cpuacct"); both spellings are symlinked on most systems.
  for (const name of ["cpuacct", "cpu,cpuacct", "cpuacct,cpu"]) {
    const path = join(MOUNT_ROOT, name);
    if (existsSync(join(path, "cpuacct.usage"))) return path;
  }
  return undefined;
}

function readNumber(path: string): number | undefined {
  try {
    const value = Number(readFileSync(path, "utf8").trim());
    return Number.isFinite(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/** Reads "key value" lines (memory.oom_control, pids.events). */
function readKeyed(path: string, key: string): number | undefined {
  try {
    for (const line of readFileSync(path, "utf8").split("\n")) {
      const [name, value] = line.trim().split(/\s+/);
      if (name === key) return Number(value);
    }
  } catch {
    return undefined;
  }
  return undefined;
}

function readLines(path: string): number[] {
  try {
    return readFileSync(path, "utf8")
      .split("\n")
      .filter((line) => line.trim() !== "")
      .map(Number);
  } catch {
    return [];
  }
}

function isCode(error: unknown, code: string): boolean {
  return error instanceof Error && "code" in error && error.code === code;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
