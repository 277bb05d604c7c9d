/**
 * The execution API as plain functions of an authenticated caller, shared by every way in (HTTP routes,
 * the SandboxService RPC entrypoint). Refusals are thrown as CordonError; each way in turns them into
 * its own wire form.
 */
import type { ExecutionTrackerApi, JobTicket, TrackedState } from "../durable/execution-tracker";
import { CordonError, ErrorCode } from "../errors";
import { instrumentJob, type ExportKind, type Violation } from "../edge/instrument";
import { prepareEdgeJob } from "../edge/prepare";
import { checkNodeCode, prepareNodeJob } from "../node/prepare";
import { nodeHomeHasNetwork } from "../node/select-home";
import { newId } from "../ids";
import { effectiveTrustLevel } from "../policy/admission";
import { CORDONS, type TrustLevel } from "../policy/trust";
import type { ExecutionProgress, ExecutionRequest, ExecutionResult, ListQuery, ValidateRequest } from "../schemas";
import { findExecution, listExecutions, type ExecutionPage } from "../store/executions";
import type { Caller } from "../tenants/authenticate";
import { admitExecution, type RateInfo } from "./admission";

export interface ServiceContext {
  env: Env;
  caller: Caller;
  /** This Worker's loopback entrypoints (the production home hands JobBindings to jobs). */
  exports: Cloudflare.Exports;
}

/** A job that passed every check and has its concurrency slot, ready for its tracker. */
interface Admitted {
  ticket: JobTicket;
  rate: RateInfo;
  tracker: ExecutionTrackerApi;
}

async function admit(context: ServiceContext, job: ExecutionRequest): Promise<Admitted> {
  const { env, caller } = context;
  const trustLevel = effectiveTrustLevel(job.trustLevel, caller.tenant.maxTrustLevel, job.runtime);
  const acceptedAt = Date.now();
  const executionId = newId("exec");
  // Static checks run before admission, so refused code does not use up the tenant's quota.
  const prepared =
    job.runtime === "node"
      ? prepareNodeJob(job, {
          executionId,
          trustLevel,
          tenantId: caller.tenant.id,
          networkAvailable: nodeHomeHasNetwork(env),
        })
      : prepareEdgeJob(job, { executionId, trustLevel, acceptedAt });
  const admission = await admitExecution(env, caller, prepared.limits.timeoutMs);
  return {
    ticket: { job, prepared, tenantId: caller.tenant.id, acceptedAt, lease: admission.lease },
    rate: admission.rate,
    tracker: trackerOf(env, executionId),
  };
}

/** Runs a job and answers with its result. */
export async function execute(
  context: ServiceContext,
  job: ExecutionRequest,
): Promise<{ result: ExecutionResult; rate: RateInfo }> {
  const { ticket, rate, tracker } = await admit(context, job);
  return { result: await tracker.run(ticket), rate };
}

/** Starts a job and answers at once; its tracker runs it and keeps its result. */
export async function submit(
  context: ServiceContext,
  job: ExecutionRequest,
): Promise<{ progress: ExecutionProgress; rate: RateInfo }> {
  const { ticket, rate, tracker } = await admit(context, job);
  return { progress: await tracker.submit(ticket), rate };
}

export async function getExecution(context: ServiceContext, id: string): Promise<ExecutionResult | ExecutionProgress> {
  const stored = await findExecution(context.env.DB, context.caller.tenant.id, id);
  if (stored) return stored;
  return outcomeOf(await trackedState(context, id), id);
}

/** The result once the job has finished, or its progress after `timeoutMs`. */
export async function waitForExecution(
  context: ServiceContext,
  id: string,
  timeoutMs: number,
): Promise<ExecutionResult | ExecutionProgress> {
  return outcomeOf(await trackedState(context, id, (tracker) => tracker.wait(timeoutMs)), id);
}

export async function cancelExecution(
  context: ServiceContext,
  id: string,
): Promise<ExecutionResult | ExecutionProgress> {
  return outcomeOf(await trackedState(context, id, (tracker) => tracker.cancel()), id);
}

/** Deletes a finished execution's stored result; a running one must be cancelled first. */
export async function deleteExecution(context: ServiceContext, id: string): Promise<void> {
  const state = await trackedState(context, id);
  if (!state.found) throw notFound(id);
  if (!state.finished) {
    throw new CordonError(ErrorCode.EXECUTION_NOT_FINISHED, "the execution is still running; cancel it first", { id });
  }
  await trackerOf(context.env, id).forget();
}

const EXECUTION_ID = /^exec_[0-9a-f]{32}$/;

function trackerOf(env: Env, id: string): ExecutionTrackerApi {
  // Typed through its plain interface (see ExecutionTrackerApi for why).
  return env.EXECUTION_TRACKER.get(env.EXECUTION_TRACKER.idFromName(id)) as unknown as ExecutionTrackerApi;
}

/**
 * The state of the caller's own execution, after `act` if given. The owner is checked before `act`
 * runs, so another tenant's id (or a malformed one) is "not found" and nothing is done to it.
 */
async function trackedState(
  context: ServiceContext,
  id: string,
  act?: (tracker: ExecutionTrackerApi) => Promise<TrackedState>,
): Promise<TrackedState> {
  if (!EXECUTION_ID.test(id)) return { found: false };
  const tracker = trackerOf(context.env, id);
  const owner = await tracker.state();
  if (!owner.found || owner.tenantId !== context.caller.tenant.id) return { found: false };
  return act ? act(tracker) : owner;
}

function outcomeOf(state: TrackedState, id: string): ExecutionResult | ExecutionProgress {
  if (!state.found) throw notFound(id);
  return state.finished ? state.result : state.progress;
}

function notFound(id: string): CordonError {
  // Another tenant's id answers exactly like an id that does not exist.
  return new CordonError(ErrorCode.NOT_FOUND, `no execution with id ${id}`);
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
  const refused = new Set(CORDONS[trustLevel].refusedConstructs);
  if (request.runtime === "node") {
    const problems = checkNodeCode(request.code, refused);
    const syntax = problems.syntax ? [{ rule: "syntax-error" as const, ...problems.syntax }] : [];
    return {
      valid: !problems.syntax && problems.violations.length === 0,
      trustLevel,
      problems: [...syntax, ...problems.violations],
    };
  }
  const checked = instrumentJob(request.code, { refusedGlobals: refused });
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
