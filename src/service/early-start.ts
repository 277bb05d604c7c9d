/**
 * Whether a synchronous job may start while its admission call is still on its way: the isolate's
 * start (the largest part of a small job) then overlaps the round trip to the tenant's ledger.
 *
 * Safe because nothing a job does reaches the world before it is admitted: its binding calls wait for
 * the answer (BindingSession.admitted) and are refused if it is no, and a job with network never
 * starts early (its requests leave through the egress gateway, which does not wait). A refused job's
 * result is dropped and its isolate ends with the request. What a refused early start costs is the
 * CPU it used meanwhile, so a tenant refused in the last few seconds in this isolate starts no job
 * early, and neither does one that has just used its last admission of the window.
 */
import type { PreparedJob } from "../edge/prepare";
import type { PreparedNodeJob } from "../node/prepare";

/** How long after a refusal a tenant's jobs wait for their admission before starting. */
const REFUSAL_MEMORY_MS = 10_000;
/** Tenants remembered; past this the memory starts afresh (it is a hint, not a limit). */
const MAX_TENANTS = 10_000;

const refusedUntil = new Map<string, number>();

export function mayStartEarly(tenantId: string, prepared: PreparedJob | PreparedNodeJob): boolean {
  if (prepared.runtime !== "edge" || prepared.runnerRequest.network !== null) return false;
  const until = refusedUntil.get(tenantId);
  if (until === undefined) return true;
  if (until > Date.now()) return false;
  refusedUntil.delete(tenantId);
  return true;
}

/** Records an admission answer: a refusal, or an admission that left no room in the rate window. */
export function noteAdmission(tenantId: string, answer: { allowed: boolean; remaining: number }): void {
  if (answer.allowed && answer.remaining > 0) return;
  if (refusedUntil.size >= MAX_TENANTS) refusedUntil.clear();
  refusedUntil.set(tenantId, Date.now() + REFUSAL_MEMORY_MS);
}
