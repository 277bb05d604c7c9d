/**
 * API keys: `ck_<12 id chars>_<32 secret chars>`. The `ck_<id>` prefix is visible (stored, listed,
 * logged); the whole key is shown once at creation and stored only as its SHA-256. A key has 190 bits
 * of entropy, so a fast hash is enough; comparison is constant-time. No I/O.
 */
const ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";
const ID_CHARS = 12;
const SECRET_CHARS = 32;
export const KEY_PATTERN = /^(ck_[a-z0-9]{12})_[a-z0-9]{32}$/;

export interface MintedKey {
  key: string;
  prefix: string;
  hash: string;
}

export async function mintKey(): Promise<MintedKey> {
  const prefix = `ck_${randomChars(ID_CHARS)}`;
  const key = `${prefix}_${randomChars(SECRET_CHARS)}`;
  return { key, prefix, hash: await hashKey(key) };
}

/** The visible prefix of a well-formed key, or null for anything else. */
export function keyPrefix(key: string): string | null {
  return KEY_PATTERN.exec(key)?.[1] ?? null;
}

export async function hashKey(key: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key));
  return toHex(new Uint8Array(digest));
}

export function sameHash(a: string, b: string): boolean {
  const left = new TextEncoder().encode(a);
  const right = new TextEncoder().encode(b);
  return left.byteLength === right.byteLength && crypto.subtle.timingSafeEqual(left, right);
}

function randomChars(count: number): string {
  // 252 is the largest multiple of 36 below 256: rejecting bytes above it keeps the draw uniform.
  let out = "";
  while (out.length < count) {
    for (const byte of crypto.getRandomValues(new Uint8Array(count * 2))) {
      if (byte < 252 && out.length < count) out += ALPHABET[byte % ALPHABET.length];
    }
  }
  return out;
}

function toHex(bytes: Uint8Array): string {
  return [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}
