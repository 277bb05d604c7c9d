/**
 * HTTP authentication. Tenant routes take `Authorization: Bearer <API key>`; admin routes take the
 * ADMIN_TOKEN secret. Every refusal is 401 UNAUTHORIZED with the same message whether the key is
 * missing, malformed, unknown or revoked (the reason goes to the log, not the caller).
 */
import { createMiddleware } from "hono/factory";
import { CordonError, ErrorCode } from "../errors";
import { authenticate, type AuthOutcome, type Caller } from "../tenants/authenticate";
import { clientAddress, countFailedLookup, LookupGate, type LookupRefusal } from "../tenants/lookup-throttle";
import { hashKey, sameHash } from "../tenants/keys";

export type TenantEnv = { Bindings: Env; Variables: { caller: Caller } };

export const UNAUTHORIZED_MESSAGE = "a valid API key is required: `Authorization: Bearer ck_…`";

export const requireApiKey = createMiddleware<TenantEnv>(async (c, next) => {
  const address = clientAddress(c.req.header("cf-connecting-ip"));
  const gate = new LookupGate(address);
  let outcome: AuthOutcome;
  try {
    outcome = await authenticate(c.env.DB, bearer(c.req.header("authorization")), (keyHash) => gate.enter(keyHash));
  } finally {
    gate.leave();
  }
  if (!outcome.ok) {
    console.log(JSON.stringify({ event: "auth_refused", via: "http", reason: outcome.reason }));
    if (gate.refusal !== null) throw lookupsRefused(gate.refusal);
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

function lookupsRefused({ reason, retryAfterSeconds }: LookupRefusal): CordonError {
  const why =
    reason === "failed_key_lookups"
      ? "too many requests with unknown API keys from this address"
      : "too many API keys being looked up at once for this address";
  return new CordonError(ErrorCode.RATE_LIMITED, `${why}; retry in ${retryAfterSeconds} s`, {
    limit: reason,
    retryAfterSeconds,
  });
}

function bearer(header: string | undefined): string | null {
  const match = /^Bearer\s+(\S+)$/i.exec(header ?? "");
  return match?.[1] ?? null;
}
