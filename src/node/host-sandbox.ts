/**
 * The local home of node jobs: the sandbox host's `POST /v1/node/run` (bubblewrap, kernel limits).
 * Never throws: an unreachable or silent host is SANDBOX_UNAVAILABLE; a malformed reply is refused.
 */
import type { z } from "zod";
import type { NodeSandbox } from "./node-sandbox";
import { NodeRunReplySchema } from "./protocol";

type NodeRunReply = z.infer<typeof NodeRunReplySchema>;

/** The host answers within the job's timeout plus its own start-up and clean-up; past this, it is stuck. */
const HOST_MARGIN_MS = 10_000;

export function hostNodeSandbox(baseUrl: string, token: string): NodeSandbox {
  const headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
  return {
    async run(request) {
      try {
        const response = await fetch(new URL("/v1/node/run", baseUrl), {
          method: "POST",
          headers,
          body: JSON.stringify(request),
          signal: AbortSignal.timeout(request.timeoutMs + HOST_MARGIN_MS),
        });
        const reply = NodeRunReplySchema.safeParse(await response.json().catch(() => null));
        if (!response.ok || !reply.success)
          return unavailable(`the local sandbox host answered ${response.status} without a valid reply`);
        return reply.data;
      } catch {
        return unavailable(`the local sandbox host is unreachable at ${baseUrl}`);
      }
    },
    async cancel(executionId) {
      await fetch(new URL(`/v1/node/jobs/${executionId}/cancel`, baseUrl), {
        method: "POST",
        headers,
        signal: AbortSignal.timeout(HOST_MARGIN_MS),
      }).catch(() => undefined);
    },
  };
}

function unavailable(message: string): NodeRunReply {
  return { ok: false, error: { code: "SANDBOX_UNAVAILABLE", message } };
}
