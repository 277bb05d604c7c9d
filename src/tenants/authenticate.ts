/**
 * Who is calling: an API key → its tenant. Used by every way in (HTTP bearer header, RPC argument).
 * Accepted keys are remembered for a few seconds (caller-cache.ts).
 * Returns why a key was refused for the log; callers answer every refusal the same way.
 */
import { cacheCaller, cachedCaller } from "./caller-cache";
import { hashKey, keyPrefix, sameHash } from "./keys";
import { findKeyWithTenant, type ApiKeyRecord, type Tenant } from "./store";

export interface Caller {
  tenant: Tenant;
  key: ApiKeyRecord;
}

export type AuthOutcome =
  | { ok: true; caller: Caller }
  | { ok: false; reason: "missing" | "malformed" | "unknown" | "revoked" }
  /** The key is not cached and `mayLookUp` said no (see lookup-throttle.ts). */
  | { ok: false; reason: "lookup_refused" };

/** Compared when the prefix is unknown, so an unknown key costs the same work as a wrong one. */
const DECOY_HASH = "0".repeat(64);

export async function authenticate(
  db: D1Database,
  key: string | null,
  mayLookUp: (keyHash: string) => boolean = () => true,
): Promise<AuthOutcome> {
  if (key === null || key === "") return { ok: false, reason: "missing" };
  const prefix = keyPrefix(key);
  if (prefix === null) return { ok: false, reason: "malformed" };
  const hash = await hashKey(key);
  const cached = cachedCaller(hash);
  if (cached) return { ok: true, caller: cached };
  if (!mayLookUp(hash)) return { ok: false, reason: "lookup_refused" };
  const found = await findKeyWithTenant(db, prefix);
  if (!sameHash(hash, found?.key.hash ?? DECOY_HASH) || !found) return { ok: false, reason: "unknown" };
  if (found.key.revokedAt !== null) return { ok: false, reason: "revoked" };
  const { hash: _hash, ...publicRecord } = found.key;
  const caller = { tenant: found.tenant, key: publicRecord };
  cacheCaller(hash, caller);
  return { ok: true, caller };
}
