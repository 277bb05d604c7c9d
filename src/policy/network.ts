/**
 * Whether a job may have network, and with which policy: the request's `limits.network` resolved
 * against its cordon's budgets. The same for edge and node jobs, so both runtimes give one verdict.
 */
import { CordonError, ErrorCode } from "../errors";
import { resolveEgressPolicy, type EgressPolicy, type NetworkPolicy } from "../egress/policy";
import { CORDONS, type TrustLevel } from "./trust";

/** The job's egress policy, or null for no network; throws when the level has no network to give. */
export function admitNetwork(requested: NetworkPolicy | undefined, trustLevel: TrustLevel): EgressPolicy | null {
  const { limits } = CORDONS[trustLevel];
  const egress = resolveEgressPolicy(requested, { requests: limits.subrequests, bytes: limits.networkBytes });
  if (!egress.ok) {
    throw new CordonError(
      ErrorCode.SANDBOX_NETWORK_BLOCKED,
      `network access is not available at trust level "${trustLevel}"`,
      { rule: egress.rule },
    );
  }
  return egress.policy;
}

/** The effective network limits a result reports: the policy's budgets, or 0 for a job without network. */
export function networkLimits(policy: EgressPolicy | null): { subrequests: number; networkBytes: number } {
  return { subrequests: policy?.maxRequests ?? 0, networkBytes: policy?.maxBytes ?? 0 };
}
