/**
 * Runs one admitted edge job: runner → judge. Storing the result is the ExecutionTracker's job (it
 * also stores results of jobs that never report).
 */
import type { BindingSession } from "../bindings/session";
import { ErrorCode } from "../errors";
import type { ExecutionRequest, ExecutionResult } from "../schemas";
import { judge } from "./judge";
import type { PreparedJob } from "./prepare";
import type { EdgeRunner } from "./protocol";

export interface RunContext {
  runner: EdgeRunner;
  session: BindingSession;
  tenantId: string;
  codeSha256: string;
  acceptedAt: Date;
}

export async function runEdgeJob(
  job: ExecutionRequest,
  prepared: PreparedJob,
  context: RunContext,
): Promise<ExecutionResult> {
  const reply = await context.runner.run(prepared.runnerRequest, context.session);
  const record = {
    id: prepared.runnerRequest.executionId,
    tenantId: context.tenantId,
    codeSha256: context.codeSha256,
    createdAt: context.acceptedAt,
    finishedAt: new Date(),
  };
  try {
    return judge(record, job, prepared, reply, context.session.counters);
  } catch (error) {
    // A report that parsed but cannot be judged still ends the job with a stored result, never a 500.
    const message = `the runner's report could not be judged: ${error instanceof Error ? error.message : String(error)}`;
    const crashed = { ok: false as const, error: { code: ErrorCode.SANDBOX_RUNNER_CRASHED, message } };
    return judge(record, job, prepared, crashed, context.session.counters);
  }
}
