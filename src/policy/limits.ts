/**
 * How a request's limits are resolved against its cordon: a missing limit takes the level's default;
 * a value above the level's maximum is clamped to it (never an error). The effective values are
 * returned with every result. No I/O.
 */
import { CORDONS, type CordonPolicy, type LimitRange, type TrustLevel } from "./trust";

/** Fixed bounds on console capture that do not vary by level. */
export const LOG_BOUNDS = {
  maxLogEntries: 1_000,
  maxLogMessageChars: 8 * 1024,
} as const;

export type LimitName = keyof CordonPolicy["limits"];
export type EffectiveLimits = Record<LimitName, number>;
export type RequestedLimits = Partial<Record<LimitName, number | undefined>>;

export function resolveLimits(level: TrustLevel, requested: RequestedLimits): EffectiveLimits {
  const ranges = CORDONS[level].limits;
  const resolved = {} as EffectiveLimits;
  for (const name of Object.keys(ranges) as LimitName[]) {
    resolved[name] = clamp(requested[name], ranges[name]);
  }
  return resolved;
}

function clamp(value: number | undefined, range: LimitRange): number {
  return Math.min(value ?? range.default, range.max);
}

export type NodeLimitName = keyof CordonPolicy["nodeLimits"];
export type EffectiveNodeLimits = Record<NodeLimitName, number> & Pick<EffectiveLimits, "logBytes" | "outputBytes">;
export type RequestedNodeLimits = Partial<Record<NodeLimitName | "logBytes" | "outputBytes", number | undefined>>;

/** The same rule for node jobs: defaults from the level, values above its maxima clamped. */
export function resolveNodeLimits(level: TrustLevel, requested: RequestedNodeLimits): EffectiveNodeLimits {
  const ranges = CORDONS[level].nodeLimits;
  const resolved = {} as Record<NodeLimitName, number>;
  for (const name of Object.keys(ranges) as NodeLimitName[]) resolved[name] = clamp(requested[name], ranges[name]);
  const shared = CORDONS[level].limits;
  return {
    ...resolved,
    logBytes: clamp(requested.logBytes, shared.logBytes),
    outputBytes: clamp(requested.outputBytes, shared.outputBytes),
  };
}
