/**
 * Authentication. Tenant routes take `Authorization: Bearer <API key>`; admin routes take the
 * ADMIN_TOKEN secret. Every refusal is 401 UNAUTHORIZED with the same message whether the key is
 * missing, malformed, unknown or revoked (the reason goes to the log, not the caller).
 */
import { createMiddleware } from "hono/factory";
import { CordonError, ErrorCode } from "../errors";
import { hashKey, keyPrefix, sameHash } from "../tenants/keys";
import { findKeyByPrefix, findTenant, type ApiKeyRecord, type Tenant } from "../tenants/store";

export interface Caller {
  tenant: Tenant;
  key: ApiKeyRecord;
}

export type TenantEnv = { Bindings: Env; Variables: { caller: Caller } };

/** Hashed when the prefix is unknown, so an unknown key costs the same work as a wrong one. */
const DECOY_HASH = "0".repeat(64);

export const requireApiKey = createMiddleware<TenantEnv>(async (c, next) => {
  const caller = await authenticate(c.env.DB, c.req.header("authorization"));
  if (!caller.ok) {
    console.log(JSON.stringify({ event: "auth_refused", reason: caller.reason }));
    throw new CordonError(ErrorCode.UNAUTHORIZED, "a valid API key is required: `Authorization: Bearer ck_…`");
  }
  c.set("caller", caller.caller);
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

type AuthOutcome =
  { ok: true; caller: Caller } | { ok: false; reason: "missing" | "malformed" | "unknown" | "revoked" };

async function authenticate(db: D1Database, header: string | undefined): Promise<AuthOutcome> {
  const key = bearer(header);
  if (key === null) return { ok: false, reason: "missing" };
  const prefix = keyPrefix(key);
  if (prefix === null) return { ok: false, reason: "malformed" };
  const [record, hash] = await Promise.all([findKeyByPrefix(db, prefix), hashKey(key)]);
  if (!sameHash(hash, record?.hash ?? DECOY_HASH)) return { ok: false, reason: "unknown" };
  if (!record) return { ok: false, reason: "unknown" };
  if (record.revokedAt !== null) return { ok: false, reason: "revoked" };
  const tenant = await findTenant(db, record.tenantId);
  if (!tenant) return { ok: false, reason: "unknown" };
  const { hash: _hash, ...key_ } = record;
  return { ok: true, caller: { tenant, key: key_ } };
}

function bearer(header: string | undefined): string | null {
  const match = /^Bearer\s+(\S+)$/i.exec(header ?? "");
  return match?.[1] ?? null;
}
