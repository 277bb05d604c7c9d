/**
 * Admission of one execution against its tenant's rate limit and concurrency cap (the TenantLedger).
 * Returns the rate information every way in reports (HTTP: RateLimit-* headers); a refusal is a
 * RATE_LIMITED CordonError carrying the same information.
 */
import type { AdmitResult, JournalEntry, RateRequest, TenantLedgerApi } from "../durable/tenant-ledger";
import { CordonError, ErrorCode, type RateInfo } from "../errors";
import type { Caller } from "../tenants/authenticate";
import { noteAdmission, refusedRecently } from "./early-start";

export const RATE_WINDOW_MS = 60 * 60 * 1000;
/** Margin past a job's timeout after which an unreleased lease frees itself. */
const LEASE_MARGIN_MS = 30_000;

export type { RateInfo };

export function ledgerOf(env: Env, tenantId: string): TenantLedgerApi {
  // Typed through its plain interface (see TenantLedgerApi for why).
  return env.TENANT_LEDGER.get(env.TENANT_LEDGER.idFromName(tenantId)) as unknown as TenantLedgerApi;
}

/** Frees an asynchronous job's concurrency slot (a synchronous job's is freed when it completes). */
export async function releaseLease(env: Env, tenantId: string, executionId: string): Promise<void> {
  await ledgerOf(env, tenantId).release(executionId);
}

export interface AdmissionRequest {
  executionId: string;
  timeoutMs: number;
  /** A synchronous job, journaled by the ledger in the same call (see TenantLedger). */
  journal?: JournalEntry;
}

/** Admits the job or throws RATE_LIMITED; the job holds a concurrency slot from here until it ends. */
export async function admitExecution(env: Env, caller: Caller, request: AdmissionRequest): Promise<RateInfo> {
  const result = await ledgerOf(env, caller.tenant.id).admit({
    ...rateRequestOf(caller),
    executionId: request.executionId,
    maxConcurrency: caller.tenant.maxConcurrency,
    leaseMs: request.timeoutMs + LEASE_MARGIN_MS,
    ...(request.journal ? { journal: request.journal } : {}),
  });
  noteAdmission(caller.tenant.id, result);
  return rateOrRefusal(caller, result);
}

/**
 * Counts a request whose code was checked but runs nothing (validation, code the checks refused)
 * against the tenant's window, or throws RATE_LIMITED when the window is full.
 */
export async function chargeCheck(env: Env, caller: Caller): Promise<RateInfo> {
  const result = await ledgerOf(env, caller.tenant.id).charge(rateRequestOf(caller));
  noteAdmission(caller.tenant.id, result);
  return rateOrRefusal(caller, result);
}

/**
 * Before a tenant's code is checked: a tenant refused (or at its limit) in this isolate in the last
 * few seconds is asked of its ledger first, so code over the limit is refused without being parsed.
 * Others are not: the hot path makes no extra call.
 */
export async function requireRoomIfRecentlyRefused(env: Env, caller: Caller): Promise<void> {
  if (!refusedRecently(caller.tenant.id)) return;
  rateOrRefusal(caller, await ledgerOf(env, caller.tenant.id).peek(rateRequestOf(caller)));
}

export function rateRequestOf(caller: Caller): RateRequest {
  return {
    keyId: caller.key.id,
    tenantLimit: caller.tenant.rateLimitPerHour,
    keyLimit: caller.key.rateLimitPerHour,
    windowMs: RATE_WINDOW_MS,
  };
}

function rateOrRefusal(caller: Caller, result: AdmitResult): RateInfo {
  const rate: RateInfo = {
    limit: result.limit,
    remaining: result.remaining,
    resetSeconds: Math.ceil(result.resetMs / 1000),
  };
  if (!result.allowed) {
    const retryAfterSeconds = Math.max(1, Math.ceil(result.retryAfterMs / 1000));
    const message =
      result.reason === "concurrency"
        ? `the tenant already runs ${caller.tenant.maxConcurrency} executions at once`
        : `over the limit of ${result.limit} requests per hour (executions and code checks)${result.reason === "key_rate" ? " for this key" : ""}`;
    throw new CordonError(
      ErrorCode.RATE_LIMITED,
      message,
      { limit: result.reason, retryAfterSeconds },
      { ...rate, retryAfterSeconds },
    );
  }
  return rate;
}
