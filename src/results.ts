/**
 * What every job's result shares, whichever runtime ran it and however it ended: the identity part,
 * the zero metrics, and the result of a job that ended without a report of its own. No I/O.
 */
import { ErrorCode } from "./errors";
import type { TrustLevel } from "./policy/trust";
import type { ExecutionRequest, ExecutionResult, Metrics } from "./schemas";

/** What the dispatcher knows of the job besides its report. */
export interface JobRecord {
  id: string;
  tenantId: string;
  codeSha256: string;
  createdAt: Date;
  finishedAt: Date;
}

/** The part of a prepared job (edge or node) a result records. */
export interface PreparedIdentity {
  runtime: "edge" | "node";
  trustLevel: TrustLevel;
  limits: Record<string, number>;
}

export function resultBase(record: JobRecord, job: Pick<ExecutionRequest, "metadata">, prepared: PreparedIdentity) {
  return {
    id: record.id,
    runtime: prepared.runtime,
    tenantId: record.tenantId,
    trustLevel: prepared.trustLevel,
    limits: prepared.limits,
    codeSha256: record.codeSha256,
    metadata: job.metadata ?? {},
    createdAt: record.createdAt.toISOString(),
    finishedAt: record.finishedAt.toISOString(),
  };
}

export function emptyMetrics(duration: number): Metrics {
  return {
    duration,
    runTime: null,
    cpuTime: null,
    memory: null,
    filesWritten: 0,
    coldStart: true,
    logBytes: 0,
    logsDropped: 0,
    outputBytes: 0,
    checkpoints: 0,
    bindingCalls: { db: 0, kv: 0 },
    dbQueries: 0,
    dbRejected: 0,
    kvReads: 0,
    kvWrites: 0,
    networkBlocked: 0,
    networkRequests: 0,
    networkBytes: 0,
  };
}

/**
 * The result of a job that ended without a report of its own: cancelled by its caller, given up on
 * at its deadline by whoever holds it (its tracker or its tenant's ledger), or whose report could not
 * be judged. Logs are lost with the runner.
 */
export function abandonedResult(
  record: JobRecord,
  job: Pick<ExecutionRequest, "metadata">,
  prepared: PreparedIdentity,
  code: typeof ErrorCode.SANDBOX_CANCELLED | typeof ErrorCode.SANDBOX_TIMEOUT | typeof ErrorCode.SANDBOX_RUNNER_CRASHED,
  message: string,
): ExecutionResult {
  const status = {
    SANDBOX_CANCELLED: "cancelled",
    SANDBOX_TIMEOUT: "timed_out",
    SANDBOX_RUNNER_CRASHED: "failed",
  } as const;
  return {
    ...resultBase(record, job, prepared),
    status: status[code],
    success: false,
    output: null,
    logs: [],
    logsTruncated: false,
    metrics: emptyMetrics(record.finishedAt.getTime() - record.createdAt.getTime()),
    error: { code, message, logsLost: true },
  };
}
