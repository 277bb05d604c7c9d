/**
 * Source of the network-attempt recorder loaded into edge isolates (as `cordon-net.js`).
 * Enforcement is the runtime's (`globalOutbound: null`); this module only remembers which hosts the
 * job tried, so the result can name them. An attempt fails the job even if the job catches the error.
 */
import { MAX_NAME_CHARS } from "../../untrusted-output";

export const NET_SOURCE = String.raw`
const attempts = [];
const sliceText = Function.prototype.call.bind(String.prototype.slice);
const clip = (text) => (typeof text !== "string" ? "" : text.length > ${MAX_NAME_CHARS} ? sliceText(text, 0, ${MAX_NAME_CHARS}) : text);

export class CordonNetworkBlocked extends Error {
  constructor(host, via) {
    super("network access is disabled for this job (tried " + via + " to " + host + ")");
    this.name = "CordonNetworkBlocked";
    this.host = host;
  }
}

export function blockNetwork(host, via) {
  if (attempts.length < 20) attempts.push({ host: clip(host), via: clip(via) });
  return new CordonNetworkBlocked(host, via);
}

export function networkAttempts() {
  return attempts.slice();
}
`;
