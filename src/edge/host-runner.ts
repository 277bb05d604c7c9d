/**
 * Edge runner reached over loopback HTTP: the local sandbox host (host/), which runs each job in a
 * supervised workerd process so that a job that wedges or exhausts memory cannot take the dispatcher
 * down. Never throws: an unreachable or silent host is `SANDBOX_UNAVAILABLE` / `SANDBOX_TIMEOUT`.
 */
import { ErrorCode } from "../errors";
import { RunnerReply, type EdgeRunner, type RunnerFailure, type RunnerRequest } from "./protocol";

/**
 * The host answers by the job's deadline plus its own kill grace; past this extra margin the host
 * itself is presumed stuck.
 */
export const HOST_REPLY_MARGIN_MS = 4_000;

export function hostRunner(baseUrl: string, token: string): EdgeRunner {
  return {
    async run(request: RunnerRequest): Promise<RunnerReply> {
      let response: Response;
      try {
        response = await fetch(new URL("/v1/edge/run", baseUrl), {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: JSON.stringify(request),
          signal: AbortSignal.timeout(request.timeoutMs + HOST_REPLY_MARGIN_MS),
        });
      } catch (error) {
        if (error instanceof DOMException && error.name === "TimeoutError") {
          return failure(ErrorCode.SANDBOX_TIMEOUT, "the local sandbox host did not answer before the deadline");
        }
        return failure(ErrorCode.SANDBOX_UNAVAILABLE, `the local sandbox host is unreachable at ${baseUrl}`);
      }
      if (!response.ok) {
        return failure(ErrorCode.SANDBOX_UNAVAILABLE, `the local sandbox host answered ${response.status}`);
      }
      const reply = RunnerReply.safeParse(await response.json().catch(() => null));
      if (!reply.success)
        return failure(ErrorCode.SANDBOX_UNAVAILABLE, "the local sandbox host sent a malformed reply");
      return reply.data;
    },
  };
}

function failure(code: RunnerFailure["code"], message: string): RunnerReply {
  return { ok: false, error: { code, message } };
}
