/**
 * Admission of one execution against its tenant's rate limit and concurrency cap (RateLimiter DO).
 * Sets the RateLimit-* headers on every answer; a refusal is 429 RATE_LIMITED with Retry-After.
 */
import type { Context } from "hono";
import { CordonError, ErrorCode } from "../errors";
import type { AcquireResult } from "../durable/rate-limiter";
import type { Caller, TenantEnv } from "./auth";

export const RATE_WINDOW_MS = 60 * 60 * 1000;
/** Margin past a job's timeout after which an unreleased lease frees itself. */
const LEASE_MARGIN_MS = 30_000;

export interface Admission {
  release(): Promise<void>;
}

export async function admitExecution(c: Context<TenantEnv>, caller: Caller, timeoutMs: number): Promise<Admission> {
  const limiter = c.env.RATE_LIMITER.get(c.env.RATE_LIMITER.idFromName(caller.tenant.id));
  const result: AcquireResult = await limiter.acquire({
    keyId: caller.key.id,
    tenantLimit: caller.tenant.rateLimitPerHour,
    keyLimit: caller.key.rateLimitPerHour,
    windowMs: RATE_WINDOW_MS,
    maxConcurrency: caller.tenant.maxConcurrency,
    leaseMs: timeoutMs + LEASE_MARGIN_MS,
  });
  c.header("RateLimit-Limit", String(result.limit));
  c.header("RateLimit-Remaining", String(result.remaining));
  c.header("RateLimit-Reset", String(Math.ceil(result.resetMs / 1000)));
  if (!result.allowed) {
    const retryAfterSeconds = Math.max(1, Math.ceil(result.retryAfterMs / 1000));
    c.header("Retry-After", String(retryAfterSeconds));
    const message =
      result.reason === "concurrency"
        ? `the tenant already runs ${caller.tenant.maxConcurrency} executions at once`
        : `over the limit of ${result.limit} executions per hour${result.reason === "key_rate" ? " for this key" : ""}`;
    throw new CordonError(ErrorCode.RATE_LIMITED, message, {
      limit: result.reason,
      retryAfterSeconds,
    });
  }
  return { release: () => limiter.release(result.leaseId) };
}
