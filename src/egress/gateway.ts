/**
 * The egress gateway: the `globalOutbound` of an edge job that has network. Every `fetch()` the job
 * makes arrives here as a request and goes through `egressFetch` (fetch.ts) with the job's policy and
 * meter. A refusal is a 403 response carrying EGRESS_REFUSAL_HEADER (the isolate's fetch wrapper turns
 * it into a thrown error) and is recorded in the job's meter, which is what the dispatcher judges by:
 * a job that catches the error still fails with SANDBOX_NETWORK_BLOCKED.
 */
import { WorkerEntrypoint } from "cloudflare:workers";
import { egressFetch, refusalResponse, type Upstream } from "./fetch";
import { activeEgressMeter, type EgressRefusal } from "./meter";
import { EgressPolicy } from "./policy";

// ---------------------------------------------------------------------------------------------------
// The entrypoint

export interface EgressGatewayProps {
  executionId: string;
  policy: EgressPolicy;
}

/**
 * The gateway's own env. `EGRESS_TEST_UPSTREAM` exists only in the test configuration (a service
 * binding to an auxiliary Worker serving canned responses): it replaces the transport, never the
 * checks, which have all run by the time the upstream is called. wrangler.toml must never declare it.
 */
export interface EgressEnv {
  EGRESS_TEST_UPSTREAM?: { fetch(request: Request): Promise<Response> };
}

/** What `EgressGateway.fetch` does, as a function of its props and env (so tests can call it). */
export async function gatewayFetch(request: Request, props: EgressGatewayProps, env: EgressEnv): Promise<Response> {
  const meter = activeEgressMeter(props.executionId);
  if (!meter) {
    return refusalResponse({ rule: "job_not_running", host: "", message: "the job is not running" });
  }
  const policy = EgressPolicy.safeParse(props.policy);
  if (!policy.success) {
    const refusal: EgressRefusal = {
      rule: "network_disabled",
      host: "",
      message: "the job has no valid network policy",
    };
    meter.refuse(refusal);
    return refusalResponse(refusal);
  }
  const testUpstream = env.EGRESS_TEST_UPSTREAM;
  const upstream: Upstream = testUpstream ? (outgoing) => testUpstream.fetch(outgoing) : (outgoing) => fetch(outgoing);
  return egressFetch(request, { policy: policy.data, meter, upstream });
}

/**
 * Handed to a job as `globalOutbound` with `props: { executionId, policy }` set by the runner, so the
 * job can neither pick another job's meter nor widen its own policy. Only the two handlers are
 * reachable.
 */
export class EgressGateway extends WorkerEntrypoint<EgressEnv, EgressGatewayProps> {
  override async fetch(request: Request): Promise<Response> {
    return gatewayFetch(request, this.ctx.props, this.env);
  }

  /**
   * A job's `connect()` arrives here when it has a gateway (with `globalOutbound: null` the runtime
   * refuses it itself). Raw sockets bypass every HTTP rule, so they are refused, and recorded so the
   * job fails even if it swallows the error.
   */
  override async connect(socket: Socket): Promise<void> {
    gatewayConnect(this.ctx.props);
    await socket.close();
  }
}

/** Records a refused socket in the job's meter (the socket itself is closed by the entrypoint). */
export function gatewayConnect(props: Pick<EgressGatewayProps, "executionId">): void {
  activeEgressMeter(props.executionId)?.refuse({
    rule: "socket_not_allowed",
    host: "",
    message: "connect() sockets are not allowed; only fetch() to allowed domains",
  });
}
