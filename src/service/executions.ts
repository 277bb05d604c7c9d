/**
 * The execution API as plain functions of an authenticated caller, shared by every way in (HTTP routes,
 * the SandboxService RPC entrypoint). Refusals are thrown as CordonError; each way in turns them into
 * its own wire form.
 */
import { BindingSession } from "../bindings/session";
import { CordonError, ErrorCode } from "../errors";
import { runEdgeJob } from "../edge/execute";
import { instrumentJob, type ExportKind, type Violation } from "../edge/instrument";
import { prepareEdgeJob } from "../edge/prepare";
import { edgeRunnerFor } from "../edge/select-runner";
import { newId } from "../ids";
import { effectiveTrustLevel } from "../policy/admission";
import { CORDONS, type TrustLevel } from "../policy/trust";
import type { ExecutionRequest, ExecutionResult, ListQuery, ValidateRequest } from "../schemas";
import { findExecution, listExecutions, type ExecutionPage } from "../store/executions";
import type { Caller } from "../tenants/authenticate";
import { admitExecution, type RateInfo } from "./admission";

export interface ServiceContext {
  env: Env;
  caller: Caller;
  /** This Worker's loopback entrypoints (the production home hands JobBindings to jobs). */
  exports: Cloudflare.Exports;
}

export async function execute(
  context: ServiceContext,
  job: ExecutionRequest,
): Promise<{ result: ExecutionResult; rate: RateInfo }> {
  const { env, caller } = context;
  const trustLevel = effectiveTrustLevel(job.trustLevel, caller.tenant.maxTrustLevel, job.runtime);
  const acceptedAt = new Date();
  // Static checks run before admission, so refused code does not use up the tenant's quota.
  const prepared = prepareEdgeJob(job, { executionId: newId("exec"), trustLevel, acceptedAt: acceptedAt.getTime() });
  const admission = await admitExecution(env, caller, prepared.limits.timeoutMs);
  try {
    const session = new BindingSession({
      executionId: prepared.runnerRequest.executionId,
      tenantId: caller.tenant.id,
      trustLevel,
      maxCalls: prepared.limits.bindingCalls,
      db: env.DB,
      kv: env.JOB_KV,
    });
    const result = await runEdgeJob(job, prepared, {
      runner: edgeRunnerFor(env, context.exports),
      session,
      db: env.DB,
      tenantId: caller.tenant.id,
      acceptedAt,
    });
    return { result, rate: admission.rate };
  } finally {
    // Awaited, not deferred: a caller that sends its next job on our answer must find the slot free.
    await admission.release();
  }
}

export async function getExecution(context: ServiceContext, id: string): Promise<ExecutionResult> {
  const result = await findExecution(context.env.DB, context.caller.tenant.id, id);
  // Another tenant's id answers exactly like an id that does not exist.
  if (!result) throw new CordonError(ErrorCode.NOT_FOUND, `no execution with id ${id}`);
  return result;
}

export function listOwnExecutions(context: ServiceContext, query: ListQuery): Promise<ExecutionPage> {
  return listExecutions(context.env.DB, context.caller.tenant.id, query);
}

export interface ValidationReport {
  valid: boolean;
  trustLevel: TrustLevel;
  exportKind?: ExportKind;
  problems: (
    | Violation
    | { rule: "syntax-error"; message: string; line: number; column: number }
    | { rule: "no-default-export"; message: string }
  )[];
}

export function validateCode(context: ServiceContext, request: ValidateRequest): ValidationReport {
  const trustLevel = effectiveTrustLevel(request.trustLevel, context.caller.tenant.maxTrustLevel, request.runtime);
  const checked = instrumentJob(request.code, { refusedGlobals: new Set(CORDONS[trustLevel].refusedConstructs) });
  if (checked.ok) return { valid: true, trustLevel, exportKind: checked.exportKind, problems: [] };
  switch (checked.kind) {
    case "violations":
      return { valid: false, trustLevel, problems: checked.violations };
    case "syntax":
      return {
        valid: false,
        trustLevel,
        problems: [{ rule: "syntax-error", message: checked.message, line: checked.line, column: checked.column }],
      };
    case "no-default-export":
      return { valid: false, trustLevel, problems: [{ rule: "no-default-export", message: checked.message }] };
  }
}
