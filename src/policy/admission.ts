/**
 * Which trust level a request runs at: the requested level if it is at or below the tenant's ceiling
 * (default: the ceiling), and only for a runtime that level allows. No I/O.
 */
import { CordonError, ErrorCode } from "../errors";
import { CORDONS, withinCeiling, type TrustLevel } from "./trust";

export function effectiveTrustLevel(
  requested: TrustLevel | undefined,
  ceiling: TrustLevel,
  runtime: "edge" | "node",
): TrustLevel {
  const level = requested ?? ceiling;
  if (!withinCeiling(level, ceiling)) {
    throw new CordonError(
      ErrorCode.TRUST_LEVEL_EXCEEDED,
      `trust level "${level}" is above this tenant's ceiling "${ceiling}"`,
      { requested: level, ceiling },
    );
  }
  if (!CORDONS[level].runtimes.includes(runtime)) {
    throw new CordonError(
      ErrorCode.RUNTIME_NOT_ALLOWED,
      `the ${runtime} runtime is not available at trust level "${level}"`,
      {
        trustLevel: level,
        runtime,
      },
    );
  }
  return level;
}
