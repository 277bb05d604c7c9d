/**
 * Runs an admitted job on its home (edge: a Worker Loader isolate or the local host's runner; node: a
 * sandbox) and judges the reply into a result; stops it there when it is cancelled. Shared by every
 * place a job runs from: the dispatcher's request (synchronous jobs) and an ExecutionTracker (async).
 */
import { jobDatabaseFor } from "../bindings/job-database";
import { BindingSession } from "../bindings/session";
import { BYTES_PER_MB, StorageQuota } from "../bindings/storage-quota";
import { ErrorCode } from "../errors";
import { runEdgeJob } from "../edge/execute";
import type { PreparedJob } from "../edge/prepare";
import { edgeRunnerFor } from "../edge/select-runner";
import { judgeNode } from "../node/judge";
import type { PreparedNodeJob } from "../node/prepare";
import { nodeHomeFor } from "../node/select-home";
import { abandonedResult } from "../results";
import { ledgerOf } from "../service/admission";
import type { ExecutionRequest, ExecutionResult } from "../schemas";

/** A job that has not reported this long after its deadline (past the runner's kill and the host's margin) is given up. */
export const REPORT_GRACE_MS = 10_000;

/** What running a job needs from whoever runs it. */
export interface HomeContext {
  env: Env;
  /** The Worker's loopback entrypoints (edge jobs reach their bindings and gateway through them). */
  exports: Cloudflare.Exports;
  /** Keeps work going past the answer (a container returned to its warm pool). */
  waitUntil: (promise: Promise<unknown>) => void;
}

/** The home context of a Durable Object that runs or stops jobs (a tracker, a ledger). */
export function durableHome(env: Env, ctx: DurableObjectState): HomeContext {
  return { env, exports: ctx.exports, waitUntil: (promise) => ctx.waitUntil(promise) };
}

/** An admitted job: everything needed to run it and record it. */
export interface AdmittedJob {
  job: ExecutionRequest;
  prepared: PreparedJob | PreparedNodeJob;
  tenantId: string;
  acceptedAt: number;
  /** SHA-256 of the job's code, computed once at admission for every record of it. */
  codeSha256: string;
  /** The tenant's storage limit: its tables in the jobs' database and its KV entries (bindings/storage-quota.ts). */
  storageLimitMb: number;
}

/** `admitted`: for a job started before its admission answer, see BindingSessionOptions.admitted. */
export async function runOnItsHome(
  home: HomeContext,
  { job, prepared, tenantId, acceptedAt, codeSha256, storageLimitMb }: AdmittedJob,
  admitted?: Promise<boolean>,
): Promise<ExecutionResult> {
  if (prepared.runtime === "node") {
    const reply = await nodeHomeFor(home.env, prepared.trustLevel, home.waitUntil).run(prepared.request);
    const record = {
      id: prepared.executionId,
      tenantId,
      codeSha256,
      createdAt: new Date(acceptedAt),
      finishedAt: new Date(),
    };
    try {
      return judgeNode(record, job, prepared, reply);
    } catch (error) {
      // As for edge jobs (runEdgeJob): a reply that cannot be judged still ends in a stored result.
      const message = `the sandbox's report could not be judged: ${error instanceof Error ? error.message : String(error)}`;
      return abandonedResult(record, job, prepared, ErrorCode.SANDBOX_RUNNER_CRASHED, message);
    }
  }
  const session = new BindingSession({
    executionId: prepared.executionId,
    tenantId,
    trustLevel: prepared.trustLevel,
    maxCalls: prepared.limits.bindingCalls,
    db: jobDatabaseFor(home.env, acceptedAt + prepared.limits.timeoutMs),
    kv: home.env.JOB_KV,
    storage: new StorageQuota(storageLimitMb * BYTES_PER_MB, () => ledgerOf(home.env, tenantId)),
    ...(admitted ? { admitted } : {}),
  });
  return runEdgeJob(job, prepared, {
    runner: edgeRunnerFor(home.env, home.exports),
    session,
    tenantId,
    codeSha256,
    acceptedAt: new Date(acceptedAt),
  });
}

/** Stops a job's runner where the platform allows (its result is already recorded as cancelled). */
export async function cancelOnItsHome(
  home: HomeContext,
  job: { runtime: "edge" | "node"; trustLevel: PreparedJob["trustLevel"]; executionId: string },
): Promise<void> {
  if (job.runtime === "node") await nodeHomeFor(home.env, job.trustLevel, home.waitUntil).cancel(job.executionId);
  else await edgeRunnerFor(home.env, home.exports).cancel(job.executionId);
}
