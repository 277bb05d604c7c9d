/**
 * The port every home of node jobs satisfies: the local sandbox host (bubblewrap, kernel limits) and
 * the Cloudflare Sandbox containers (containerNodeSandbox). The dispatcher holds one of these and never
 * knows which; the contract is src/node/protocol.ts.
 */
import type { NodeRunReply, NodeRunRequest } from "./protocol";

export interface NodeSandbox {
  /** Runs one job in a sandbox of its own. Never throws: a home that cannot run it says SANDBOX_UNAVAILABLE. */
  run(request: NodeRunRequest): Promise<NodeRunReply>;
  /** Stops the job's processes and releases its sandbox, where the home can (best effort; never throws). */
  cancel(executionId: string): Promise<void>;
}
