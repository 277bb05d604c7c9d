/**
 * A bound on the reads of DB that unknown API keys cost. Every well-formed key the caller cache does not
 * hold is looked up in DB, so random keys sent from one address would be as many reads. Failed lookups
 * are counted per client address by the Rate Limiting binding (`AUTH_FAILURES` in wrangler.toml: 20 per
 * 10 s, counted in each Cloudflare location); once an address is past that, this isolate refuses its
 * lookups until the window has passed, without reading DB. A key the cache holds is accepted without a
 * lookup, so without this check: a busy client behind the same address keeps working.
 */

/** AUTH_FAILURES' limit. */
export const FAILED_LOOKUPS_PER_WINDOW = 20;
/** AUTH_FAILURES' period. */
const WINDOW_MS = 10_000;
/** Addresses refused at once in one isolate; past it the oldest are forgotten (they pay one read each). */
const MAX_REFUSED = 10_000;

const refusedUntil = new Map<string, number>();

export interface LookupRefusal {
  retryAfterSeconds: number;
}

/** Why a lookup from `address` is refused now, or null when it may read DB. */
export function lookupRefusal(address: string | null, now = Date.now()): LookupRefusal | null {
  if (address === null) return null;
  const until = refusedUntil.get(address);
  if (until === undefined) return null;
  if (until <= now) {
    refusedUntil.delete(address);
    return null;
  }
  return { retryAfterSeconds: Math.ceil((until - now) / 1000) };
}

/**
 * Counts a lookup that found no usable key. Requests without an address are not counted: Cloudflare
 * sets `CF-Connecting-IP` on every request from outside, so those come from local tools and tests.
 */
export async function countFailedLookup(limiter: RateLimit, address: string | null, now = Date.now()): Promise<void> {
  if (address === null) return;
  const { success } = await limiter.limit({ key: address });
  if (success) return;
  refusedUntil.delete(address);
  refusedUntil.set(address, now + WINDOW_MS);
  if (refusedUntil.size > MAX_REFUSED) {
    const oldest = refusedUntil.keys().next().value;
    if (oldest !== undefined) refusedUntil.delete(oldest);
  }
}
