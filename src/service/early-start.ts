/**
 * Whether a synchronous job may start while its admission call is still on its way: the job's start
 * (an isolate, or a sandboxed Node process) then overlaps the round trip to the tenant's ledger.
 *
 * Only jobs that cannot reach the world before they are admitted start early. An edge job without
 * network: its binding calls wait for the answer (BindingSession.admitted) and are refused if it is
 * no. A node job without network and without packages: it has no bindings, and writes only to its own
 * sandbox. A job with network never starts early (its requests leave through the egress gateway or
 * proxy, which do not wait), nor one with packages (they are installed into a shared cache). A refused
 * job's result is dropped. What a refused early start costs is the CPU it used meanwhile, so a tenant
 * refused in the last few seconds in this isolate starts no job early, and neither does one that has
 * just used its last admission of the window.
 */
import type { PreparedJob } from "../edge/prepare";
import type { PreparedNodeJob } from "../node/prepare";

/** How long after a refusal a tenant's jobs wait for their admission before starting. */
const REFUSAL_MEMORY_MS = 10_000;
/** Tenants remembered; past this the memory starts afresh (it is a hint, not a limit). */
const MAX_TENANTS = 10_000;

const refusedUntil = new Map<string, number>();

export function mayStartEarly(tenantId: string, prepared: PreparedJob | PreparedNodeJob): boolean {
  return startsWithoutEffects(prepared) && !refusedRecently(tenantId);
}

/**
 * Whether the tenant was refused, or used its last admission of the window, in this isolate in the
 * last REFUSAL_MEMORY_MS (admission.ts also asks, before it lets such a tenant's code be checked).
 */
export function refusedRecently(tenantId: string): boolean {
  const until = refusedUntil.get(tenantId);
  if (until === undefined) return false;
  if (until > Date.now()) return true;
  refusedUntil.delete(tenantId);
  return false;
}

/** Records an admission answer: a refusal, or an admission that left no room in the rate window. */
export function noteAdmission(tenantId: string, answer: { allowed: boolean; remaining: number }): void {
  if (answer.allowed && answer.remaining > 0) return;
  if (refusedUntil.size >= MAX_TENANTS) refusedUntil.clear();
  refusedUntil.set(tenantId, Date.now() + REFUSAL_MEMORY_MS);
}

function startsWithoutEffects(prepared: PreparedJob | PreparedNodeJob): boolean {
  if (prepared.runtime === "edge") return prepared.runnerRequest.network === null;
  return !prepared.request.network && !prepared.request.packages?.length;
}
