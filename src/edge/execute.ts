/**
 * Runs one admitted edge job: runner → judge. Storing the result is the ExecutionTracker's job (it
 * also stores results of jobs that never report).
 */
import type { BindingSession } from "../bindings/session";
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
  return judge(
    {
      id: prepared.runnerRequest.executionId,
      tenantId: context.tenantId,
      codeSha256: context.codeSha256,
      createdAt: context.acceptedAt,
      finishedAt: new Date(),
    },
    job,
    prepared,
    reply,
    context.session.counters,
  );
}
