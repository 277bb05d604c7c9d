/**
 * Edge runner reached over loopback HTTP: the local sandbox host (host/), which runs each job in a
 * supervised workerd process so that a job that wedges or exhausts memory cannot take the dispatcher
 * down. The job's binding calls come back as events, answered here from the job's BindingSession
 * (see host/edge-jobs.ts). Never throws: an unreachable or silent host is SANDBOX_UNAVAILABLE or
 * SANDBOX_TIMEOUT.
 */
import { z } from "zod";
import type { BindingSession } from "../bindings/session";
import { ErrorCode } from "../errors";
import { RunnerReply, type EdgeRunner, type RunnerFailure, type RunnerRequest } from "./protocol";

/**
 * The host answers by the job's deadline plus its own kill grace; past this extra margin the host
 * itself is presumed stuck.
 */
export const HOST_REPLY_MARGIN_MS = 4_000;

const HostEvent = z.discriminatedUnion("type", [
  z.object({ type: z.literal("call"), callId: z.string(), call: z.unknown() }),
  z.object({ type: z.literal("done"), reply: z.unknown() }),
]);

export function hostRunner(baseUrl: string, token: string): EdgeRunner {
  const cancel = async (executionId: string): Promise<void> => {
    // The host kills the runner process holding the job (or ends its wait); its conversation then ends.
    await fetch(new URL(`/v1/edge/jobs/${executionId}/cancel`, baseUrl), {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(HOST_REPLY_MARGIN_MS),
    }).catch(() => undefined);
  };
  return {
    async run(request: RunnerRequest, session: BindingSession): Promise<RunnerReply> {
      const deadline = Date.now() + request.timeoutMs + HOST_REPLY_MARGIN_MS;
      const post = (path: string, body: unknown) => postEvent(new URL(path, baseUrl), token, body, deadline);
      let event = await post("/v1/edge/run", request);
      while (event.ok && event.value.type === "call") {
        const answer = await session.call(event.value.call);
        event = await post(`/v1/edge/jobs/${request.executionId}/answer`, { callId: event.value.callId, answer });
      }
      if (!event.ok) {
        // Given up on here, the job must not run on there after its result is stored.
        if (event.error.code === ErrorCode.SANDBOX_TIMEOUT) await cancel(request.executionId);
        return event;
      }
      const reply = RunnerReply.safeParse(event.value.type === "done" ? event.value.reply : null);
      if (!reply.success)
        return failure(ErrorCode.SANDBOX_UNAVAILABLE, "the local sandbox host sent a malformed reply");
      return reply.data;
    },
    cancel,
  };
}

async function postEvent(
  url: URL,
  token: string,
  body: unknown,
  deadline: number,
): Promise<{ ok: true; value: z.infer<typeof HostEvent> } | Extract<RunnerReply, { ok: false }>> {
  let response: Response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())),
    });
  } catch (error) {
    if (error instanceof DOMException && error.name === "TimeoutError") {
      return failure(ErrorCode.SANDBOX_TIMEOUT, "the local sandbox host did not answer before the deadline");
    }
    return failure(ErrorCode.SANDBOX_UNAVAILABLE, `the local sandbox host is unreachable at ${url.origin}`);
  }
  if (!response.ok) return failure(ErrorCode.SANDBOX_UNAVAILABLE, `the local sandbox host answered ${response.status}`);
  const event = HostEvent.safeParse(await response.json().catch(() => null));
  if (!event.success) return failure(ErrorCode.SANDBOX_UNAVAILABLE, "the local sandbox host sent a malformed event");
  return { ok: true, value: event.data };
}

function failure(code: RunnerFailure["code"], message: string): Extract<RunnerReply, { ok: false }> {
  return { ok: false, error: { code, message } };
}
