/**
 * The one kernel setting the host changes: expedited RCU grace periods. Every sandbox start moves
 * processes into fresh cgroups and namespaces, and Node's first threads then wait for an RCU grace
 * period; expedited ones are far shorter. Measured here: a node job's cold start through the API went
 * from ~120–128 ms to ~95 ms p50 (README.md, "Cold starts and the kernel"). The cost is some
 * inter-processor interrupts on every CPU, which a dedicated sandbox host does not mind.
 *
 * Only as root, only from 0 to 1, and put back when the host stops. CORDON_HOST_EXPEDITE_RCU=0 leaves
 * the kernel alone.
 */
import { readFileSync, writeFileSync } from "node:fs";

export const RCU_EXPEDITED = "/sys/kernel/rcu_expedited";

export interface KernelTuning {
  /** Whether this host turned expedited grace periods on (and will turn them off again). */
  readonly expeditedRcu: boolean;
  restore(): void;
}

export function tuneKernel(env: NodeJS.ProcessEnv, path = RCU_EXPEDITED): KernelTuning {
  const untouched = { expeditedRcu: false, restore: () => undefined };
  if (env.CORDON_HOST_EXPEDITE_RCU === "0" || process.getuid?.() !== 0) return untouched;
  try {
    if (readFileSync(path, "utf8").trim() !== "0") return untouched;
    writeFileSync(path, "1");
  } catch {
    return untouched; // not writable here (a container, a read-only /sys): the defaults stay
  }
  let restored = false;
  return {
    expeditedRcu: true,
    restore() {
      if (restored) return;
      restored = true;
      try {
        writeFileSync(path, "0");
      } catch {
        // best effort, as the setting itself
      }
    },
  };
}
