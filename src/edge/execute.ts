/**
 * Runs one accepted edge job end to end: prepare → runner → judge → store. The result is stored
 * before it is returned, so a caller that gets an id can always read the result back.
 */
import type { ExecutionRequest, ExecutionResult } from "../schemas";
import { saveExecution, sha256Hex } from "../store/executions";
import { judge } from "./judge";
import { prepareEdgeJob } from "./prepare";
import type { EdgeRunner } from "./protocol";

export function newExecutionId(): string {
  return `exec_${crypto.randomUUID().replaceAll("-", "")}`;
}

export async function executeEdgeJob(
  job: ExecutionRequest,
  runner: EdgeRunner,
  db: D1Database,
): Promise<ExecutionResult> {
  const id = newExecutionId();
  const createdAt = new Date();
  const prepared = prepareEdgeJob(job, id, createdAt.getTime());
  const [reply, codeSha256] = await Promise.all([runner.run(prepared.runnerRequest), sha256Hex(job.code)]);
  const result = judge(id, job, prepared, reply, { createdAt, finishedAt: new Date() });
  await saveExecution(db, result, codeSha256);
  return result;
}
