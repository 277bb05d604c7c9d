/**
 * Admission of one execution against its tenant's rate limit and concurrency cap (RateLimiter DO).
 * Returns the rate information every way in reports (HTTP: RateLimit-* headers); a refusal is a
 * RATE_LIMITED CordonError carrying the same information.
 */
import { CordonError, ErrorCode, type RateInfo } from "../errors";
import type { Caller } from "../tenants/authenticate";

export const RATE_WINDOW_MS = 60 * 60 * 1000;
/** Margin past a job's timeout after which an unreleased lease frees itself. */
const LEASE_MARGIN_MS = 30_000;

export type { RateInfo };

export interface Admission {
  rate: RateInfo;
  /** The concurrency lease; whoever finishes the job releases it (see releaseLease). */
  lease: Lease;
}

export interface Lease {
  tenantId: string;
  leaseId: string;
}

export async function releaseLease(env: Env, lease: Lease): Promise<void> {
  await env.RATE_LIMITER.get(env.RATE_LIMITER.idFromName(lease.tenantId)).release(lease.leaseId);
}

export async function admitExecution(env: Env, caller: Caller, timeoutMs: number): Promise<Admission> {
  const limiter = env.RATE_LIMITER.get(env.RATE_LIMITER.idFromName(caller.tenant.id));
  const result = await limiter.acquire({
    keyId: caller.key.id,
    tenantLimit: caller.tenant.rateLimitPerHour,
    keyLimit: caller.key.rateLimitPerHour,
    windowMs: RATE_WINDOW_MS,
    maxConcurrency: caller.tenant.maxConcurrency,
    leaseMs: timeoutMs + LEASE_MARGIN_MS,
  });
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
        : `over the limit of ${result.limit} executions per hour${result.reason === "key_rate" ? " for this key" : ""}`;
    throw new CordonError(
      ErrorCode.RATE_LIMITED,
      message,
      { limit: result.reason, retryAfterSeconds },
      { ...rate, retryAfterSeconds },
    );
  }
  return { rate, lease: { tenantId: caller.tenant.id, leaseId: result.leaseId } };
}
