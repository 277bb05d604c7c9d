/**
 * A bound on the reads of DB that unknown API keys cost. Every well-formed key the caller cache does not
 * hold is looked up in DB, so random keys sent from one address would be as many reads.
 *
 * - Failed lookups are counted per client address by the Rate Limiting binding (`AUTH_FAILURES` in
 *   wrangler.toml: 20 per 10 s, counted in each Cloudflare location); once an address is past that,
 *   this isolate refuses its lookups until the window has passed, without reading DB.
 * - A failure is only known once its lookup is done, so a burst sent at once would all be read before
 *   the first is counted: an isolate looks up at most MAX_IN_FLIGHT different keys of one address at
 *   a time and refuses the others. Requests with a key already being looked up go ahead: a busy
 *   client's burst, when its key has just left the cache, is one key.
 * - IPv6 addresses count by their /64, the block one host is usually given.
 *
 * A key the cache holds is accepted without a lookup, so without these checks: a busy client behind
 * the same address keeps working.
 */

/** AUTH_FAILURES' limit. */
export const FAILED_LOOKUPS_PER_WINDOW = 20;
/** AUTH_FAILURES' period. */
const WINDOW_MS = 10_000;
/** Lookups of one address under way at once in an isolate. */
export const MAX_IN_FLIGHT = 4;
/** Addresses refused at once in one isolate; past it the oldest are forgotten (they pay one read each). */
const MAX_REFUSED = 10_000;

const refusedUntil = new Map<string, number>();
/** Lookups under way in this isolate: by address, the requests for each key (by hash). */
const inFlight = new Map<string, Map<string, number>>();

export interface LookupRefusal {
  reason: "failed_key_lookups" | "key_lookups_in_flight";
  retryAfterSeconds: number;
}

/** The address a request is counted under: CF-Connecting-IP, an IPv6 one cut to its /64; null without one. */
export function clientAddress(header: string | undefined): string | null {
  const address = header?.trim() ?? "";
  if (address === "") return null;
  if (!address.includes(":")) return address;
  // An IPv4 client reached over IPv6 (::ffff:a.b.c.d) is that IPv4 address, not the /64 of all of them.
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  if (mapped?.[1]) return mapped[1];
  return `${ipv6Groups(address).slice(0, 4).join(":")}::/64`;
}

/**
 * One request's permission to look its key up. `enter` is asked right before the lookup (a cached key
 * never asks); `leave` is called once the request is done with it, whatever happened.
 */
export class LookupGate {
  readonly #address: string | null;
  /** The key this request is looking up, once `enter` let it. */
  #entered: string | null = null;
  /** Why the lookup was refused, once `enter` said no. */
  refusal: LookupRefusal | null = null;

  constructor(address: string | null) {
    this.#address = address;
  }

  enter(keyHash: string, now = Date.now()): boolean {
    const address = this.#address;
    if (address === null) return true;
    const until = refusedUntil.get(address);
    if (until !== undefined && until > now) {
      this.refusal = { reason: "failed_key_lookups", retryAfterSeconds: Math.ceil((until - now) / 1000) };
      return false;
    }
    if (until !== undefined) refusedUntil.delete(address);
    const keys = inFlight.get(address) ?? new Map<string, number>();
    const requests = keys.get(keyHash) ?? 0;
    if (requests === 0 && keys.size >= MAX_IN_FLIGHT) {
      this.refusal = { reason: "key_lookups_in_flight", retryAfterSeconds: 1 };
      return false;
    }
    keys.set(keyHash, requests + 1);
    inFlight.set(address, keys);
    this.#entered = keyHash;
    return true;
  }

  leave(): void {
    const keyHash = this.#entered;
    if (keyHash === null || this.#address === null) return;
    this.#entered = null;
    const keys = inFlight.get(this.#address);
    const requests = (keys?.get(keyHash) ?? 1) - 1;
    if (requests > 0) keys?.set(keyHash, requests);
    else keys?.delete(keyHash);
    if (keys?.size === 0) inFlight.delete(this.#address);
  }
}

/**
 * Counts a lookup that found no usable key. Requests without an address are not counted: Cloudflare
 * sets `CF-Connecting-IP` on every request from outside, so those come from local tools and tests. A
 * limiter that fails counts nothing: the throttle is a bound on cost, not a reason to answer 500.
 */
export async function countFailedLookup(limiter: RateLimit, address: string | null, now = Date.now()): Promise<void> {
  if (address === null) return;
  const outcome = await limiter.limit({ key: address }).catch((error: unknown) => {
    console.error(JSON.stringify({ event: "auth_throttle_failed", message: String(error) }));
    return { success: true };
  });
  if (outcome.success) return;
  refusedUntil.delete(address);
  refusedUntil.set(address, now + WINDOW_MS);
  if (refusedUntil.size > MAX_REFUSED) {
    const oldest = refusedUntil.keys().next().value;
    if (oldest !== undefined) refusedUntil.delete(oldest);
  }
}

/** The eight 16-bit groups of an IPv6 address (lowercase, no leading zeros), `::` expanded. */
function ipv6Groups(address: string): string[] {
  const [head = "", tail] = address.toLowerCase().split("::", 2);
  const split = (part: string) => (part === "" ? [] : part.split(":"));
  const front = split(head);
  const back = tail === undefined ? [] : split(tail);
  const missing = Math.max(0, 8 - front.length - back.length);
  return [...front, ...Array<string>(missing).fill("0"), ...back].map((group) => group.replace(/^0+(?=.)/, ""));
}
