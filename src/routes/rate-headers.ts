/** Writes rate-limit state as RateLimit-* headers (and Retry-After on a refusal). */
import type { Context } from "hono";
import type { RateInfo } from "../service/admission";

export function setRateHeaders(c: Context, rate: RateInfo): void {
  c.header("RateLimit-Limit", String(rate.limit));
  c.header("RateLimit-Remaining", String(rate.remaining));
  c.header("RateLimit-Reset", String(rate.resetSeconds));
  if (rate.retryAfterSeconds !== undefined) c.header("Retry-After", String(rate.retryAfterSeconds));
}
