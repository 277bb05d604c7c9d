/**
 * Wraps one run of an edge job with its egress meter, for both homes: the dispatcher's loaderRunner
 * (production) and the edge runner Worker of the local sandbox host. The meter lives in the isolate
 * that hosts the gateway for as long as the job runs, and its report rides back with the runner
 * reply, so the dispatcher gets the counts the same way from either home.
 */
import type { EgressGatewayProps } from "./gateway";
import { EgressMeter, activateEgressMeter, type EgressReport } from "./meter";
import type { EgressPolicy } from "./policy";

/** `ctx.exports.EgressGateway` of the Worker hosting the gateway. */
export type GatewayFactory = (options: { props: EgressGatewayProps }) => Fetcher;

/**
 * Runs `run` with the job's `globalOutbound`: null for a job without network (the runtime refuses
 * fetch and connect itself), else the gateway with the job's id and policy as props. The reply gets
 * `egress` (the meter's report) only when the job had network.
 */
export async function runWithEgress<Reply extends object>(
  executionId: string,
  policy: EgressPolicy | null | undefined,
  gateway: GatewayFactory,
  run: (outbound: Fetcher | null) => Promise<Reply>,
): Promise<Reply & { egress?: EgressReport }> {
  if (!policy) return run(null);
  const meter = new EgressMeter(executionId);
  const deactivate = activateEgressMeter(meter);
  try {
    const reply = await run(gateway({ props: { executionId, policy } }));
    return { ...reply, egress: meter.report() };
  } finally {
    deactivate();
  }
}
