/** The module map of an edge isolate: our harness, guard and shims, plus the instrumented job. */
import { EGRESS_FETCH_SOURCE, EGRESS_MODULE } from "../egress/isolate";
import { GUARD_MODULE, JOB_MODULE, SOCKETS_SHIM_MODULE } from "./instrument";
import { GUARD_SOURCE } from "./isolate/guard";
import { HARNESS_SOURCE } from "./isolate/harness";
import { NET_SOURCE } from "./isolate/net";
import { SOCKETS_SHIM_SOURCE } from "./isolate/sockets";

export function isolateModules(instrumentedJob: string): Record<string, string> {
  return {
    "harness.js": HARNESS_SOURCE,
    [GUARD_MODULE]: GUARD_SOURCE,
    "cordon-net.js": NET_SOURCE,
    [SOCKETS_SHIM_MODULE]: SOCKETS_SHIM_SOURCE,
    [EGRESS_MODULE]: EGRESS_FETCH_SOURCE,
    [JOB_MODULE]: instrumentedJob,
  };
}
