/**
 * Source of the `cloudflare:sockets` stand-in loaded into edge isolates (as `cordon-sockets.js`).
 * The runtime already refuses sockets (`globalOutbound: null`); this shim exists so the attempt is
 * reported as `SANDBOX_NETWORK_BLOCKED` with the host the job tried to reach.
 */
export const SOCKETS_SHIM_SOURCE = String.raw`
import { blockNetwork } from "./cordon-net.js";

function hostOf(address) {
  if (typeof address === "string") return address.replace(/:\d+$/, "");
  if (address && typeof address === "object") return String(address.hostname);
  return String(address);
}

export function connect(address) {
  throw blockNetwork(hostOf(address), "connect");
}
`;
