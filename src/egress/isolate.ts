/**
 * Source of the fetch wrapper loaded into edge isolates that have network (as `cordon-egress.js`).
 * The isolate's `globalOutbound` is the egress gateway, which enforces everything; this wrapper only
 * turns the gateway's refusal response into a thrown error, so the job sees a failed `fetch` instead of
 * a 403 it might mistake for the site's answer. The verdict never depends on it: the dispatcher judges
 * by the gateway's meter, so a job that patches this away still fails with SANDBOX_NETWORK_BLOCKED.
 */
import { EGRESS_REFUSAL_HEADER } from "./policy";

export const EGRESS_MODULE = "cordon-egress.js";

export const EGRESS_FETCH_SOURCE = String.raw`
const REFUSAL_HEADER = ${JSON.stringify(EGRESS_REFUSAL_HEADER)};

export class CordonNetworkBlocked extends Error {
  constructor(host, rule, message) {
    super(message);
    this.name = "CordonNetworkBlocked";
    this.code = "SANDBOX_NETWORK_BLOCKED";
    this.host = host;
    this.rule = rule;
  }
}

/** Wraps the runtime's fetch (which goes to the gateway); call before the job module is evaluated. */
export function installEgressFetch() {
  const outbound = globalThis.fetch.bind(globalThis);
  const readJson = Response.prototype.json;
  const header = Headers.prototype.get;
  globalThis.fetch = async function fetch(input, init) {
    const response = await outbound(input, init);
    const rule = header.call(response.headers, REFUSAL_HEADER);
    if (rule === null) return response;
    let detail = {};
    try {
      detail = (await readJson.call(response))?.error ?? {};
    } catch {}
    throw new CordonNetworkBlocked(
      String(detail.host ?? ""),
      rule,
      String(detail.message ?? "the network request was refused"),
    );
  };
}
`;
