/**
 * Source of the network-attempt recorder loaded into edge isolates (as `cordon-net.js`).
 * Enforcement is the runtime's (`globalOutbound: null`); this module only remembers which hosts the
 * job tried, so the result can name them. An attempt fails the job even if the job catches the error.
 */
export const NET_SOURCE = String.raw`
const attempts = [];

export class CordonNetworkBlocked extends Error {
  constructor(host, via) {
    super("network access is disabled for this job (tried " + via + " to " + host + ")");
    this.name = "CordonNetworkBlocked";
    this.host = host;
  }
}

export function blockNetwork(host, via) {
  if (attempts.length < 20) attempts.push({ host, via });
  return new CordonNetworkBlocked(host, via);
}

export function networkAttempts() {
  return attempts.slice();
}
`;
