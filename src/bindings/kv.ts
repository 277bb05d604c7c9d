/**
 * The KV binding: get / put / delete / list, confined to the tenant's key prefix. Keys are checked
 * (characters, length, no path tricks) before the prefix is added, values are bounded, and list only
 * ever sees the tenant's prefix, which it strips from the keys it returns. Puts and deletes keep the
 * tenant's storage account (storage-quota.ts).
 */
import { ErrorCode } from "../errors";
import type { BindingAnswer } from "./protocol";
import { storageRefusal, type StorageQuota } from "./storage-quota";

/**
 * KV takes keys of up to 512 bytes; the tenant's prefix (`t/<tenant id>/`, 39 characters, at most
 * 64) is part of the stored key, so the job's part is kept to the rest. Keys are ASCII: a character
 * is a byte.
 */
export const MAX_KEY_CHARS = 448;
/** A TTL past this is not one KV accepts ("Value out of range"): ten years. */
export const MAX_EXPIRATION_TTL_SECONDS = 10 * 365 * 24 * 60 * 60;
export const MAX_VALUE_BYTES = 128 * 1024;
export const MAX_LIST_LIMIT = 100;
/** Cloudflare KV refuses shorter expirations. */
export const MIN_EXPIRATION_TTL_SECONDS = 60;
/** Printable ASCII without spaces; `/` allowed as a separator, checked per segment below. */
const KEY_CHARS = /^[A-Za-z0-9._~:@!$&'()*+,;=\-/]+$/;

const MAX_PREFIX_CHARS = 512 - MAX_KEY_CHARS;

export function tenantKvPrefix(tenantId: string): string {
  const prefix = `t/${tenantId}/`;
  // A longer tenant id would make the longest allowed key one KV refuses.
  if (prefix.length > MAX_PREFIX_CHARS)
    throw new Error(`a tenant's KV prefix is at most ${MAX_PREFIX_CHARS} characters`);
  return prefix;
}

/** Why a key is refused, or null when it is fine. */
export function keyProblem(key: string): string | null {
  if (key.length === 0 || key.length > MAX_KEY_CHARS) return `keys are 1 to ${MAX_KEY_CHARS} characters`;
  if (!KEY_CHARS.test(key)) return "keys may use letters, digits and . _ ~ : @ ! $ & ' ( ) * + , ; = - /";
  if (key.startsWith("/") || key.endsWith("/") || key.includes("//"))
    return "keys may not start or end with / or hold an empty segment";
  if (key.split("/").some((segment) => segment === "." || segment === ".."))
    return "keys may not hold . or .. segments";
  return null;
}

export async function kvGet(kv: KVNamespace, prefix: string, key: string): Promise<BindingAnswer> {
  const problem = keyProblem(key);
  if (problem) return refused(problem, "invalid_key");
  return { ok: true, value: await kv.get(prefix + key) };
}

export async function kvPut(
  kv: KVNamespace,
  prefix: string,
  key: string,
  value: string,
  expirationTtl: number | undefined,
  storage: StorageQuota,
): Promise<BindingAnswer> {
  const problem = keyProblem(key);
  if (problem) return refused(problem, "invalid_key");
  const bytes = new TextEncoder().encode(value).byteLength;
  if (bytes > MAX_VALUE_BYTES)
    return refused(`values are at most ${MAX_VALUE_BYTES} bytes; this one is ${bytes}`, "value_too_large");
  if (
    expirationTtl !== undefined &&
    (expirationTtl < MIN_EXPIRATION_TTL_SECONDS || expirationTtl > MAX_EXPIRATION_TTL_SECONDS)
  ) {
    const range = `${MIN_EXPIRATION_TTL_SECONDS} to ${MAX_EXPIRATION_TTL_SECONDS} seconds`;
    return refused(`expirationTtl is ${range}`, "invalid_ttl");
  }
  const expiresAt = expirationTtl === undefined ? null : Date.now() + expirationTtl * 1000;
  const grant = await storage.beginKvWrite(key, key.length + bytes, expiresAt);
  if (!grant.granted) return storageRefusal(grant, storage.limitBytes);
  await accounted(storage, key, kv.put(prefix + key, value, expirationTtl === undefined ? {} : { expirationTtl }));
  return { ok: true, value: null };
}

export async function kvDelete(
  kv: KVNamespace,
  prefix: string,
  key: string,
  storage: StorageQuota,
): Promise<BindingAnswer> {
  const problem = keyProblem(key);
  if (problem) return refused(problem, "invalid_key");
  const grant = await storage.beginKvWrite(key, null, null);
  if (!grant.granted) return storageRefusal(grant, storage.limitBytes);
  await accounted(storage, key, kv.delete(prefix + key));
  return { ok: true, value: null };
}

export async function kvList(
  kv: KVNamespace,
  prefix: string,
  options: { prefix?: string | undefined; cursor?: string | undefined; limit?: number | undefined },
): Promise<BindingAnswer> {
  const within = options.prefix ?? "";
  if (within !== "" && !KEY_CHARS.test(within))
    return refused("the list prefix has characters keys cannot have", "invalid_key");
  if (within.length > MAX_KEY_CHARS)
    return refused(`a list prefix is at most ${MAX_KEY_CHARS} characters`, "invalid_key");
  const page = await kv.list({
    prefix: prefix + within,
    limit: Math.min(options.limit ?? MAX_LIST_LIMIT, MAX_LIST_LIMIT),
    ...(options.cursor ? { cursor: options.cursor } : {}),
  });
  return {
    ok: true,
    value: {
      keys: page.keys.map((entry) => ({ name: entry.name.slice(prefix.length), expiration: entry.expiration ?? null })),
      cursor: page.list_complete ? null : page.cursor,
      complete: page.list_complete,
    },
  };
}

/** Waits for a KV write and tells the storage account how it ended. */
async function accounted(storage: StorageQuota, key: string, write: Promise<void>): Promise<void> {
  let succeeded = false;
  try {
    await write;
    succeeded = true;
  } finally {
    await storage.endKvWrite(key, succeeded);
  }
}

function refused(message: string, rule: string): BindingAnswer {
  return { ok: false, error: { code: ErrorCode.SANDBOX_SECURITY_VIOLATION, message, rule } };
}
