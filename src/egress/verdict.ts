/**
 * What a job's egress report means for its result, the same for edge and node jobs: the network
 * metrics, and the failure a refusal causes. A refusal fails the job even if the job caught the
 * error its fetch got: a job cannot probe hosts quietly.
 */
import type { Metrics } from "../schemas";
import type { EgressReport } from "./meter";

export function egressMetrics(
  egress: EgressReport | undefined,
  attempts = 0,
): Pick<Metrics, "networkRequests" | "networkBytes" | "networkBlocked"> {
  return {
    networkRequests: egress?.requests ?? 0,
    networkBytes: (egress?.bytesSent ?? 0) + (egress?.bytesReceived ?? 0),
    networkBlocked: attempts + (egress?.refusedCount ?? 0),
  };
}

/** The SANDBOX_NETWORK_BLOCKED message and detail for the job's first refusal, if it had one. */
export function egressRefusal(
  egress: EgressReport | undefined,
): { message: string; detail: { host: string; rule: string } } | undefined {
  const refusal = egress?.refusals[0];
  if (!refusal) return undefined;
  return {
    message: `a network request was refused: ${refusal.message}`,
    detail: { host: refusal.host, rule: refusal.rule },
  };
}
