/**
 * The execution API as plain functions of an authenticated caller, shared by every way in (HTTP routes,
 * the SandboxService RPC entrypoint). Refusals are thrown as CordonError; each way in turns them into
 * its own wire form.
 */
import type { ExecutionTrackerApi, TrackedState } from "../durable/execution-tracker";
import type { JournalEntry, LedgerLocation } from "../durable/tenant-ledger";
import { CordonError, ErrorCode } from "../errors";
import { instrumentJob, type ExportKind, type Violation } from "../edge/instrument";
import { prepareEdgeJob } from "../edge/prepare";
import { cancelOnItsHome, REPORT_GRACE_MS, runOnItsHome, type AdmittedJob, type HomeContext } from "../jobs/homes";
import { checkNodeCode, prepareNodeJob } from "../node/prepare";
import { nodeHomeHasNetwork } from "../node/select-home";
import { newId } from "../ids";
import { effectiveTrustLevel } from "../policy/admission";
import { CORDONS, type TrustLevel } from "../policy/trust";
import type { ExecutionProgress, ExecutionRequest, ExecutionResult, ListQuery, ValidateRequest } from "../schemas";
import {
  deleteExecution as deleteLogRow,
  findExecution,
  listExecutions,
  sha256Hex,
  type ExecutionPage,
} from "../store/executions";
import type { Caller } from "../tenants/authenticate";
import {
  admitExecution,
  chargeCheck,
  ledgerOf,
  releaseLease,
  requireRoomIfRecentlyRefused,
  type RateInfo,
} from "./admission";
import { mayStartEarly } from "./early-start";

/** A request's bindings, loopback exports and lifetime (where its synchronous jobs run), and its caller. */
export interface ServiceContext extends HomeContext {
  caller: Caller;
}

/**
 * Static checks and instrumentation, before admission. Code they refuse takes no concurrency slot,
 * but counts against the tenant's hourly window like a validation (chargeCheck): checking it was
 * work. A tenant refused lately is asked of its ledger before its code is checked at all.
 */
async function prepare(context: ServiceContext, job: ExecutionRequest): Promise<AdmittedJob> {
  const { env, caller } = context;
  await requireRoomIfRecentlyRefused(env, caller);
  const trustLevel = effectiveTrustLevel(job.trustLevel, caller.tenant.maxTrustLevel, job.runtime);
  const acceptedAt = Date.now();
  const executionId = newId("exec");
  let prepared: AdmittedJob["prepared"];
  try {
    prepared =
      job.runtime === "node"
        ? prepareNodeJob(job, {
            executionId,
            trustLevel,
            tenantId: caller.tenant.id,
            networkAvailable: nodeHomeHasNetwork(env),
          })
        : prepareEdgeJob(job, { executionId, trustLevel, acceptedAt });
  } catch (error) {
    if (!refusedByChecks(error)) throw error;
    // The refusal is the answer; a full window shows in its headers (remaining 0) and refuses the
    // tenant's next request.
    const rate = await chargeCheck(env, caller).catch(windowOfRefusal);
    throw rate ? error.withRate(rate) : error;
  }
  return {
    job,
    prepared,
    tenantId: caller.tenant.id,
    acceptedAt,
    codeSha256: await sha256Hex(job.code),
    storageLimitMb: caller.tenant.storageLimitMb,
  };
}

/**
 * Runs a job in this request and answers with its result. Its tenant's ledger journals it from
 * admission (one call) until the result is in the execution log, and gives it up at its deadline if
 * this request dies; so a synchronous job costs two calls to an object that is already warm, and the
 * first of them usually overlaps the job's start (early-start.ts).
 */
export async function execute(
  context: ServiceContext,
  job: ExecutionRequest,
): Promise<{ result: ExecutionResult; rate: RateInfo }> {
  const ticket = await prepare(context, job);
  const { prepared, tenantId } = ticket;
  const admission = admitExecution(context.env, context.caller, {
    executionId: prepared.executionId,
    timeoutMs: prepared.limits.timeoutMs,
    journal: journalEntryOf(ticket),
  });
  let rate: RateInfo;
  let result: ExecutionResult;
  if (mayStartEarly(tenantId, prepared)) {
    const admitted = admission.then(
      () => true,
      () => false,
    );
    const running = runOnItsHome(context, ticket, admitted);
    // A refused job's result is dropped, and the job stopped where its home allows it (on the local
    // host it would otherwise run on, holding a runner, until its deadline).
    running.catch(() => undefined);
    rate = await admission.catch((error: unknown) => {
      context.waitUntil(cancelOnItsHome(context, prepared).catch(() => undefined));
      throw error;
    });
    result = await running;
  } else {
    rate = await admission;
    result = await runOnItsHome(context, ticket);
  }
  // The ledger's answer wins: a job cancelled or given up meanwhile keeps the result it already has.
  const kept = await ledgerOf(context.env, tenantId).complete(prepared.executionId, result);
  if (kept) return { result: kept, rate };
  const logged = await findExecution(context.env.DB, tenantId, prepared.executionId);
  return { result: logged?.result ?? result, rate };
}

/** The window a rate refusal reports, without its Retry-After: the answer is not that refusal. */
function windowOfRefusal(error: unknown): RateInfo | undefined {
  if (!(error instanceof CordonError) || !error.rate) return undefined;
  const { limit, remaining, resetSeconds } = error.rate;
  return { limit, remaining, resetSeconds };
}

/** What the ledger keeps of a synchronous job, to give it up or cancel it without its runner. */
function journalEntryOf({ job, prepared, tenantId, acceptedAt, codeSha256 }: AdmittedJob): JournalEntry {
  return {
    id: prepared.executionId,
    tenantId,
    codeSha256,
    acceptedAt,
    deadline: acceptedAt + prepared.limits.timeoutMs + REPORT_GRACE_MS,
    metadata: job.metadata,
    prepared: {
      executionId: prepared.executionId,
      runtime: prepared.runtime,
      trustLevel: prepared.trustLevel,
      limits: prepared.limits,
    },
  };
}

/** Starts a job and answers at once; its own tracker runs it (it outlives this request) and keeps its result. */
export async function submit(
  context: ServiceContext,
  job: ExecutionRequest,
): Promise<{ progress: ExecutionProgress; rate: RateInfo }> {
  const ticket = await prepare(context, job);
  const rate = await admitExecution(context.env, context.caller, {
    executionId: ticket.prepared.executionId,
    timeoutMs: ticket.prepared.limits.timeoutMs,
  });
  const tracker = trackerOf(context.env, ticket.prepared.executionId);
  try {
    return { progress: await tracker.submit(ticket), rate };
  } catch (error) {
    // A job its tracker never took is not running: its slot is freed now, not when its lease
    // expires. One the tracker did take (its answer was lost) keeps its slot until it ends.
    const state = await tracker.state().catch(() => undefined);
    if (state && !state.found) {
      await releaseLease(context.env, ticket.tenantId, ticket.prepared.executionId).catch(() => undefined);
    }
    throw error;
  }
}

export async function getExecution(context: ServiceContext, id: string): Promise<ExecutionResult | ExecutionProgress> {
  return outcomeOf(stateOf(await locate(context, id)), id);
}

/** The result once the job has finished, or its progress after `timeoutMs`. */
export async function waitForExecution(
  context: ServiceContext,
  id: string,
  timeoutMs: number,
): Promise<ExecutionResult | ExecutionProgress> {
  const found = await locate(context, id);
  switch (found.at) {
    case "ledger":
      return outcomeOf(
        stateOf(await fromLedger(context, ledgerOf(context.env, context.caller.tenant.id).wait(id, timeoutMs), id)),
        id,
      );
    case "tracker":
      return outcomeOf(await found.tracker.wait(timeoutMs), id);
    default:
      return outcomeOf(stateOf(found), id);
  }
}

export async function cancelExecution(
  context: ServiceContext,
  id: string,
): Promise<ExecutionResult | ExecutionProgress> {
  const found = await locate(context, id);
  switch (found.at) {
    case "ledger":
      return outcomeOf(
        stateOf(await fromLedger(context, ledgerOf(context.env, context.caller.tenant.id).cancel(id), id)),
        id,
      );
    case "tracker":
      return outcomeOf(await found.tracker.cancel(), id);
    default:
      return outcomeOf(stateOf(found), id);
  }
}

/** Deletes a finished execution's stored result, every copy of it; a running one must be cancelled first. */
export async function deleteExecution(context: ServiceContext, id: string): Promise<void> {
  const found = await locate(context, id);
  const state = stateOf(found);
  if (!state.found) throw notFound(id);
  if (!state.finished) {
    throw new CordonError(ErrorCode.EXECUTION_NOT_FINISHED, "the execution is still running; cancel it first", { id });
  }
  const { env, caller } = context;
  if (found.at === "tracker" || (found.at === "log" && found.tracked)) {
    await trackerOf(env, id).forget();
    return;
  }
  // The ledger drops its copy first (waiting for a log write under way), then the log row goes.
  await ledgerOf(env, caller.tenant.id).forget(id);
  await deleteLogRow(env.DB, caller.tenant.id, id);
}

const EXECUTION_ID = /^exec_[0-9a-f]{32}$/;

function trackerOf(env: Env, id: string): ExecutionTrackerApi {
  // Typed through its plain interface (see ExecutionTrackerApi for why).
  return env.EXECUTION_TRACKER.get(env.EXECUTION_TRACKER.idFromName(id)) as unknown as ExecutionTrackerApi;
}

/** Where one of the caller's executions is held. Another tenant's id is found nowhere. */
type Found =
  | { at: "ledger"; state: Extract<TrackedState, { found: true }> }
  | { at: "tracker"; tracker: ExecutionTrackerApi; state: TrackedState }
  | { at: "log"; result: ExecutionResult; tracked: boolean }
  | { at: "nowhere" };

/**
 * A job is held by its tenant's ledger (a synchronous one, until its result is logged), or by its own
 * tracker (an asynchronous one, while the ledger holds its slot), or is in the execution log. The
 * ledger is per tenant and the log is read by tenant, so another tenant's id (or a malformed one) is
 * found nowhere and nothing is done to it.
 */
async function locate(context: ServiceContext, id: string): Promise<Found> {
  if (!EXECUTION_ID.test(id)) return { at: "nowhere" };
  return fromLedger(context, ledgerOf(context.env, context.caller.tenant.id).locate(id), id);
}

async function fromLedger(context: ServiceContext, answer: Promise<LedgerLocation>, id: string): Promise<Found> {
  const location = await answer;
  if (location.at === "ledger") return location;
  if (location.at === "tracker") {
    const tracker = trackerOf(context.env, id);
    const owner = await tracker.state();
    if (owner.found && owner.tenantId === context.caller.tenant.id) return { at: "tracker", tracker, state: owner };
  }
  const logged = await findExecution(context.env.DB, context.caller.tenant.id, id);
  return logged ? { at: "log", ...logged } : { at: "nowhere" };
}

function stateOf(found: Found): TrackedState {
  switch (found.at) {
    case "ledger":
    case "tracker":
      return found.state;
    case "log":
      return { found: true, tenantId: found.result.tenantId, finished: true, result: found.result };
    case "nowhere":
      return { found: false };
  }
}

function outcomeOf(state: TrackedState, id: string): ExecutionResult | ExecutionProgress {
  if (!state.found) throw notFound(id);
  return state.finished ? state.result : state.progress;
}

function notFound(id: string): CordonError {
  // Another tenant's id answers exactly like an id that does not exist.
  return new CordonError(ErrorCode.NOT_FOUND, `no execution with id ${id}`);
}

export async function listOwnExecutions(context: ServiceContext, query: ListQuery): Promise<ExecutionPage> {
  // Results answered before this request are written to the log after their answer; wait for them.
  await ledgerOf(context.env, context.caller.tenant.id).logged();
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

/** The code did not pass the static checks (it was parsed), as opposed to a refusal before them. */
function refusedByChecks(error: unknown): error is CordonError {
  return (
    error instanceof CordonError &&
    (error.code === ErrorCode.VALIDATION_ERROR || error.code === ErrorCode.SANDBOX_SECURITY_VIOLATION)
  );
}

/** Counts against the tenant's hourly window (chargeCheck), before the code is checked. */
export async function validateCode(
  context: ServiceContext,
  request: ValidateRequest,
): Promise<{ report: ValidationReport; rate: RateInfo }> {
  // A level above the tenant's ceiling is refused (403) before anything is checked or counted.
  const trustLevel = effectiveTrustLevel(request.trustLevel, context.caller.tenant.maxTrustLevel, request.runtime);
  const rate = await chargeCheck(context.env, context.caller);
  return { report: checkCode(request, trustLevel), rate };
}

function checkCode(request: ValidateRequest, trustLevel: TrustLevel): ValidationReport {
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
