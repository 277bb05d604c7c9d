/**
 * Trust cordons: for each trust level, the default and maximum of every limit, the bindings and
 * runtimes it may use, the SQL statement kinds its database binding accepts and the code constructs it
 * refuses. The README's trust table is checked against this module by a test. No I/O.
 *
 * Jobs of different levels never share a runner: the level is the cordon, and the local host keeps one
 * runner pool per cordon.
 */
export const TRUST_LEVELS = ["high", "medium", "low", "untrusted"] as const;
export type TrustLevel = (typeof TRUST_LEVELS)[number];

export interface LimitRange {
  default: number;
  max: number;
}

export interface CordonPolicy {
  limits: {
    /** Wall-clock time for the whole job, ms. */
    timeoutMs: LimitRange;
    /** CPU time, ms (Cloudflare's `cpuMs` in production). */
    cpuTimeMs: LimitRange;
    /** Isolate memory, MB (Workers isolates have 128 MB). */
    memoryMb: LimitRange;
    /** Bytes of console output kept. */
    logBytes: LimitRange;
    /** Bytes of JSON output (or response body) allowed. */
    outputBytes: LimitRange;
    /** Network requests of a job with `limits.network` (redirect hops count); max 0: no network at this level. */
    subrequests: LimitRange;
    /** Bytes of request and response bodies of those requests together. */
    networkBytes: LimitRange;
    /** Calls to the job's bindings (DB, KV). */
    bindingCalls: LimitRange;
  };
  /** Limits of node jobs (sandboxed processes) that differ from the edge limits above. */
  nodeLimits: {
    timeoutMs: LimitRange;
    cpuTimeMs: LimitRange;
    memoryMb: LimitRange;
    /** Largest file a job's processes may write, bytes. */
    maxFileSize: LimitRange;
    /** Files in the job's writable paths. */
    maxFiles: LimitRange;
    /** Processes besides the job's own. */
    maxSubprocesses: LimitRange;
    maxFileDescriptors: LimitRange;
  };
  runtimes: readonly ("edge" | "node")[];
  bindings: readonly ("DB" | "KV")[];
  sqlStatementKinds: readonly ("select" | "insert" | "update" | "delete" | "ddl")[];
  /** Constructs refused by the static check, beyond those refused for every level. */
  refusedConstructs: readonly RefusedConstruct[];
}

/** Global names whose use is refused at some levels (see `refusedConstructs`). */
export type RefusedConstruct = "eval" | "Function" | "WebAssembly" | "SharedArrayBuffer" | "Atomics";

const KiB = 1024;
const MiB = 1024 * KiB;

export const CORDONS: Readonly<Record<TrustLevel, CordonPolicy>> = {
  high: {
    limits: {
      timeoutMs: { default: 10_000, max: 30_000 },
      cpuTimeMs: { default: 1_000, max: 30_000 },
      memoryMb: { default: 128, max: 128 },
      logBytes: { default: 64 * KiB, max: 1 * MiB },
      // No level allows more: a stored result holds at most 1.9 MB of JSON (store/storable.ts).
      outputBytes: { default: 1 * MiB, max: 1 * MiB },
      subrequests: { default: 50, max: 1_000 },
      networkBytes: { default: 10 * MiB, max: 100 * MiB },
      bindingCalls: { default: 1_000, max: 10_000 },
    },
    nodeLimits: {
      timeoutMs: { default: 30_000, max: 120_000 },
      cpuTimeMs: { default: 10_000, max: 120_000 },
      memoryMb: { default: 512, max: 2_048 },
      maxFileSize: { default: 16 * MiB, max: 256 * MiB },
      maxFiles: { default: 1_000, max: 10_000 },
      maxSubprocesses: { default: 8, max: 32 },
      maxFileDescriptors: { default: 256, max: 1_024 },
    },
    runtimes: ["edge", "node"],
    bindings: ["DB", "KV"],
    sqlStatementKinds: ["select", "insert", "update", "delete", "ddl"],
    refusedConstructs: [],
  },
  medium: {
    limits: {
      timeoutMs: { default: 10_000, max: 20_000 },
      cpuTimeMs: { default: 500, max: 10_000 },
      memoryMb: { default: 128, max: 128 },
      logBytes: { default: 64 * KiB, max: 256 * KiB },
      outputBytes: { default: 1 * MiB, max: 1 * MiB },
      subrequests: { default: 20, max: 200 },
      networkBytes: { default: 5 * MiB, max: 25 * MiB },
      bindingCalls: { default: 500, max: 2_000 },
    },
    nodeLimits: {
      timeoutMs: { default: 30_000, max: 60_000 },
      cpuTimeMs: { default: 5_000, max: 60_000 },
      memoryMb: { default: 256, max: 1_024 },
      maxFileSize: { default: 16 * MiB, max: 64 * MiB },
      maxFiles: { default: 500, max: 2_000 },
      maxSubprocesses: { default: 4, max: 8 },
      maxFileDescriptors: { default: 128, max: 256 },
    },
    runtimes: ["edge", "node"],
    bindings: ["DB", "KV"],
    sqlStatementKinds: ["select", "insert", "update", "delete"],
    refusedConstructs: [],
  },
  low: {
    limits: {
      timeoutMs: { default: 5_000, max: 10_000 },
      cpuTimeMs: { default: 200, max: 2_000 },
      memoryMb: { default: 128, max: 128 },
      logBytes: { default: 32 * KiB, max: 64 * KiB },
      outputBytes: { default: 256 * KiB, max: 1 * MiB },
      subrequests: { default: 0, max: 0 },
      networkBytes: { default: 0, max: 0 },
      bindingCalls: { default: 100, max: 500 },
    },
    nodeLimits: {
      timeoutMs: { default: 10_000, max: 30_000 },
      cpuTimeMs: { default: 2_000, max: 10_000 },
      memoryMb: { default: 128, max: 512 },
      maxFileSize: { default: 1 * MiB, max: 16 * MiB },
      maxFiles: { default: 100, max: 500 },
      maxSubprocesses: { default: 0, max: 2 },
      maxFileDescriptors: { default: 64, max: 128 },
    },
    runtimes: ["edge", "node"],
    bindings: ["DB", "KV"],
    sqlStatementKinds: ["select"],
    refusedConstructs: ["eval", "Function"],
  },
  untrusted: {
    limits: {
      timeoutMs: { default: 2_000, max: 5_000 },
      cpuTimeMs: { default: 50, max: 500 },
      memoryMb: { default: 128, max: 128 },
      logBytes: { default: 16 * KiB, max: 32 * KiB },
      outputBytes: { default: 64 * KiB, max: 256 * KiB },
      subrequests: { default: 0, max: 0 },
      networkBytes: { default: 0, max: 0 },
      bindingCalls: { default: 0, max: 0 },
    },
    nodeLimits: {
      timeoutMs: { default: 5_000, max: 10_000 },
      cpuTimeMs: { default: 1_000, max: 5_000 },
      memoryMb: { default: 128, max: 256 },
      maxFileSize: { default: 1 * MiB, max: 1 * MiB },
      maxFiles: { default: 50, max: 100 },
      maxSubprocesses: { default: 0, max: 0 },
      maxFileDescriptors: { default: 64, max: 64 },
    },
    runtimes: ["edge"],
    bindings: [],
    sqlStatementKinds: [],
    refusedConstructs: ["eval", "Function", "WebAssembly", "SharedArrayBuffer", "Atomics"],
  },
};

const RANK: Readonly<Record<TrustLevel, number>> = { untrusted: 0, low: 1, medium: 2, high: 3 };

/** True when `requested` is at or below `ceiling`. */
export function withinCeiling(requested: TrustLevel, ceiling: TrustLevel): boolean {
  return RANK[requested] <= RANK[ceiling];
}
