/**
 * Limits of an edge job: documented defaults and maxima, and how a request is clamped to them.
 * A request may ask for less than the maximum; asking for more is clamped (never an error), and the
 * effective values are returned with every result. No I/O.
 */
export interface LimitRange {
  default: number;
  max: number;
}

export const EDGE_LIMITS = {
  /** Wall-clock time for the whole job (all test cases together), in milliseconds. */
  timeoutMs: { default: 10_000, max: 30_000 },
  /** CPU time, in milliseconds; enforced by Cloudflare in production, by the guard's wall clock locally. */
  cpuTimeMs: { default: 1_000, max: 30_000 },
  /** Isolate memory, in megabytes; Workers isolates have 128 MB. */
  memoryMb: { default: 128, max: 128 },
} as const satisfies Record<string, LimitRange>;

/** Fixed bounds on what a job can produce; not settable per request. */
export const EDGE_OUTPUT_BOUNDS = {
  maxLogEntries: 1_000,
  maxLogBytes: 64 * 1024,
  maxLogMessageChars: 8 * 1024,
  maxOutputBytes: 1024 * 1024,
} as const;

export interface EffectiveLimits {
  timeoutMs: number;
  cpuTimeMs: number;
  memoryMb: number;
}

export interface RequestedLimits {
  timeoutMs?: number | undefined;
  cpuTimeMs?: number | undefined;
  memoryMb?: number | undefined;
}

export function clampLimits(requested: RequestedLimits): EffectiveLimits {
  return {
    timeoutMs: clamp(requested.timeoutMs, EDGE_LIMITS.timeoutMs),
    cpuTimeMs: clamp(requested.cpuTimeMs, EDGE_LIMITS.cpuTimeMs),
    memoryMb: clamp(requested.memoryMb, EDGE_LIMITS.memoryMb),
  };
}

function clamp(value: number | undefined, range: LimitRange): number {
  return Math.min(value ?? range.default, range.max);
}
