/**
 * HTTP authentication. Tenant routes take `Authorization: Bearer <API key>`; admin routes take the
 * ADMIN_TOKEN secret. Every refusal is 401 UNAUTHORIZED with the same message whether the key is
 * missing, malformed, unknown or revoked (the reason goes to the log, not the caller).
 */
import { createMiddleware } from "hono/factory";
import { CordonError, ErrorCode } from "../errors";
import { authenticate, type Caller } from "../tenants/authenticate";
import { countFailedLookup, lookupRefusal } from "../tenants/lookup-throttle";
import { hashKey, sameHash } from "../tenants/keys";

export type TenantEnv = { Bindings: Env; Variables: { caller: Caller } };

export const UNAUTHORIZED_MESSAGE = "a valid API key is required: `Authorization: Bearer ck_…`";

export const requireApiKey = createMiddleware<TenantEnv>(async (c, next) => {
  const address = c.req.header("cf-connecting-ip") ?? null;
  const refusal = lookupRefusal(address);
  const outcome = await authenticate(c.env.DB, bearer(c.req.header("authorization")), () => refusal === null);
  if (!outcome.ok) {
    console.log(JSON.stringify({ event: "auth_refused", via: "http", reason: outcome.reason }));
    if (refusal !== null) throw lookupsRefused(refusal.retryAfterSeconds);
    if (outcome.reason === "unknown" || outcome.reason === "revoked") {
      await countFailedLookup(c.env.AUTH_FAILURES, address);
    }
    throw new CordonError(ErrorCode.UNAUTHORIZED, UNAUTHORIZED_MESSAGE);
  }
  c.set("caller", outcome.caller);
  await next();
});

export const requireAdmin = createMiddleware<{ Bindings: Env }>(async (c, next) => {
  const given = bearer(c.req.header("authorization")) ?? "";
  const expected = c.env.ADMIN_TOKEN ?? "";
  if (expected.length === 0 || !sameHash(await hashKey(given), await hashKey(expected))) {
    throw new CordonError(ErrorCode.UNAUTHORIZED, "the admin API needs `Authorization: Bearer <ADMIN_TOKEN>`");
  }
  await next();
});

function lookupsRefused(retryAfterSeconds: number): CordonError {
  return new CordonError(
    ErrorCode.RATE_LIMITED,
    `too many requests with unknown API keys from this address; retry in ${retryAfterSeconds} s`,
    { limit: "failed_key_lookups", retryAfterSeconds },
  );
}

function bearer(header: string | undefined): string | null {
  const match = /^Bearer\s+(\S+)$/i.exec(header ?? "");
  return match?.[1] ?? null;
}
