/**
 * Runs one admitted edge job: runner → judge → store. The result is stored before it is returned, so
 * a caller that gets an id can always read the result back.
 */
import type { BindingSession } from "../bindings/session";
import type { ExecutionRequest, ExecutionResult } from "../schemas";
import { saveExecution, sha256Hex } from "../store/executions";
import { judge } from "./judge";
import type { PreparedJob } from "./prepare";
import type { EdgeRunner } from "./protocol";

export interface RunContext {
  runner: EdgeRunner;
  session: BindingSession;
  db: D1Database;
  tenantId: string;
  acceptedAt: Date;
}

export async function runEdgeJob(
  job: ExecutionRequest,
  prepared: PreparedJob,
  context: RunContext,
): Promise<ExecutionResult> {
  const [reply, codeSha256] = await Promise.all([
    context.runner.run(prepared.runnerRequest, context.session),
    sha256Hex(job.code),
  ]);
  const result = judge(
    {
      id: prepared.runnerRequest.executionId,
      tenantId: context.tenantId,
      codeSha256,
      createdAt: context.acceptedAt,
      finishedAt: new Date(),
    },
    job,
    prepared,
    reply,
    context.session.counters,
  );
  await saveExecution(context.db, result);
  return result;
}
