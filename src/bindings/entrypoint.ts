/**
 * `JobBindings`: the one capability an edge job's isolate holds in production, handed in through
 * `ctx.exports.JobBindings({ props: { executionId } })`. The props are set by the dispatcher, so a job
 * cannot name another job; the entrypoint finds its job's BindingSession and lets it decide. Only
 * `call` is reachable over RPC.
 */
import { WorkerEntrypoint } from "cloudflare:workers";
import { ErrorCode } from "../errors";
import type { BindingAnswer } from "./protocol";
import type { BindingSession } from "./session";

/** Sessions of the jobs this isolate is running now, by execution id. */
const activeSessions = new Map<string, BindingSession>();

/** Makes a job's session reachable to its entrypoint for as long as the job runs; returns the undo. */
export function activateSession(session: BindingSession): () => void {
  activeSessions.set(session.executionId, session);
  return () => activeSessions.delete(session.executionId);
}

export interface JobBindingsProps {
  executionId: string;
}

export class JobBindings extends WorkerEntrypoint<Env, JobBindingsProps> {
  async call(raw: unknown): Promise<BindingAnswer> {
    const session = activeSessions.get(this.ctx.props.executionId);
    if (!session) {
      return {
        ok: false,
        error: { code: ErrorCode.SANDBOX_SECURITY_VIOLATION, message: "the job has ended", rule: "job_not_running" },
      };
    }
    return session.call(raw);
  }
}
