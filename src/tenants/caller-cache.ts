/**
 * Recently checked API keys, per isolate, by the SHA-256 of the key: a hot key costs one D1 read per
 * CALLER_CACHE_MS per isolate instead of one per request. Revoking a key or changing a tenant drops
 * its entries in the isolate that made the change at once; other isolates notice within CALLER_CACHE_MS
 * (the documented bound on how long a revoked key keeps working). Only accepted keys are kept, so
 * unknown keys cannot fill it.
 */
import type { Caller } from "./authenticate";

export const CALLER_CACHE_MS = 10_000;
const MAX_ENTRIES = 1_000;

const callers = new Map<string, { caller: Caller; until: number }>();

export function cachedCaller(keyHash: string): Caller | null {
  const entry = callers.get(keyHash);
  if (!entry) return null;
  if (entry.until > Date.now()) return entry.caller;
  callers.delete(keyHash);
  return null;
}

export function cacheCaller(keyHash: string, caller: Caller): void {
  callers.delete(keyHash);
  callers.set(keyHash, { caller, until: Date.now() + CALLER_CACHE_MS });
  // A Map iterates in insertion order: the first entry is the oldest.
  if (callers.size > MAX_ENTRIES) callers.delete(callers.keys().next().value ?? "");
}

/** Drops what this isolate holds for a key or a tenant that has just changed. */
export function forgetCallers(changed: { keyId: string } | { tenantId: string }): void {
  for (const [keyHash, { caller }] of callers) {
    if ("keyId" in changed ? caller.key.id === changed.keyId : caller.tenant.id === changed.tenantId) {
      callers.delete(keyHash);
    }
  }
}
