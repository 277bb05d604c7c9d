/** Tenants and API keys in D1. Keys are stored as hashes; the plain key never reaches this module's tables. */
import { forgetCallers } from "./caller-cache";
import type { TrustLevel } from "../policy/trust";
import { newId } from "../ids";

export interface Tenant {
  id: string;
  name: string;
  maxTrustLevel: TrustLevel;
  rateLimitPerHour: number;
  maxConcurrency: number;
  /** How much the tenant's tables and KV entries may take together (bindings/storage-quota.ts). */
  storageLimitMb: number;
  createdAt: string;
  updatedAt: string;
}

export interface ApiKeyRecord {
  id: string;
  tenantId: string;
  prefix: string;
  name: string | null;
  rateLimitPerHour: number | null;
  createdAt: string;
  revokedAt: string | null;
}

interface TenantRow {
  id: string;
  name: string;
  max_trust_level: TrustLevel;
  rate_limit_per_hour: number;
  max_concurrency: number;
  storage_limit_mb: number;
  created_at: string;
  updated_at: string;
}

interface KeyRow {
  id: string;
  tenant_id: string;
  prefix: string;
  hash: string;
  name: string | null;
  rate_limit_per_hour: number | null;
  created_at: string;
  revoked_at: string | null;
}

export const DEFAULT_RATE_LIMIT_PER_HOUR = 100;
export const DEFAULT_MAX_CONCURRENCY = 10;
export const DEFAULT_STORAGE_LIMIT_MB = 100;

export async function createTenant(
  db: D1Database,
  input: {
    name: string;
    maxTrustLevel: TrustLevel;
    rateLimitPerHour?: number;
    maxConcurrency?: number;
    storageLimitMb?: number;
  },
): Promise<Tenant> {
  const now = new Date().toISOString();
  const tenant: Tenant = {
    id: newId("ten"),
    name: input.name,
    maxTrustLevel: input.maxTrustLevel,
    rateLimitPerHour: input.rateLimitPerHour ?? DEFAULT_RATE_LIMIT_PER_HOUR,
    maxConcurrency: input.maxConcurrency ?? DEFAULT_MAX_CONCURRENCY,
    storageLimitMb: input.storageLimitMb ?? DEFAULT_STORAGE_LIMIT_MB,
    createdAt: now,
    updatedAt: now,
  };
  await db
    .prepare(
      "INSERT INTO tenants (id, name, max_trust_level, rate_limit_per_hour, max_concurrency, storage_limit_mb, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(
      tenant.id,
      tenant.name,
      tenant.maxTrustLevel,
      tenant.rateLimitPerHour,
      tenant.maxConcurrency,
      tenant.storageLimitMb,
      now,
      now,
    )
    .run();
  return tenant;
}

export async function findTenant(db: D1Database, id: string): Promise<Tenant | null> {
  const row = await db.prepare("SELECT * FROM tenants WHERE id = ?").bind(id).first<TenantRow>();
  return row ? tenantFromRow(row) : null;
}

export async function updateTenant(
  db: D1Database,
  id: string,
  changes: Partial<Pick<Tenant, "name" | "maxTrustLevel" | "rateLimitPerHour" | "maxConcurrency" | "storageLimitMb">>,
): Promise<Tenant | null> {
  const current = await findTenant(db, id);
  if (!current) return null;
  const next: Tenant = { ...current, ...definedOnly(changes), updatedAt: new Date().toISOString() };
  await db
    .prepare(
      "UPDATE tenants SET name = ?, max_trust_level = ?, rate_limit_per_hour = ?, max_concurrency = ?, storage_limit_mb = ?, updated_at = ? WHERE id = ?",
    )
    .bind(
      next.name,
      next.maxTrustLevel,
      next.rateLimitPerHour,
      next.maxConcurrency,
      next.storageLimitMb,
      next.updatedAt,
      id,
    )
    .run();
  forgetCallers({ tenantId: id });
  return next;
}

export async function insertKey(
  db: D1Database,
  input: { tenantId: string; prefix: string; hash: string; name?: string; rateLimitPerHour?: number },
): Promise<ApiKeyRecord> {
  const record: ApiKeyRecord = {
    id: newId("key"),
    tenantId: input.tenantId,
    prefix: input.prefix,
    name: input.name ?? null,
    rateLimitPerHour: input.rateLimitPerHour ?? null,
    createdAt: new Date().toISOString(),
    revokedAt: null,
  };
  await db
    .prepare(
      "INSERT INTO api_keys (id, tenant_id, prefix, hash, name, rate_limit_per_hour, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(record.id, record.tenantId, record.prefix, input.hash, record.name, record.rateLimitPerHour, record.createdAt)
    .run();
  return record;
}

/** One query for authentication: the key by its visible prefix, with its tenant. */
export async function findKeyWithTenant(
  db: D1Database,
  prefix: string,
): Promise<{ key: ApiKeyRecord & { hash: string }; tenant: Tenant } | null> {
  const row = await db
    .prepare(
      `SELECT k.id, k.tenant_id, k.prefix, k.hash, k.name, k.rate_limit_per_hour AS key_rate_limit, k.created_at AS key_created_at,
              k.revoked_at, t.name AS tenant_name, t.max_trust_level, t.rate_limit_per_hour, t.max_concurrency,
              t.storage_limit_mb, t.created_at, t.updated_at
       FROM api_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.prefix = ?`,
    )
    .bind(prefix)
    .first<
      Omit<KeyRow, "name" | "rate_limit_per_hour" | "created_at"> &
        Omit<TenantRow, "id" | "name"> & {
          name: string | null;
          key_rate_limit: number | null;
          key_created_at: string;
          tenant_name: string;
        }
    >();
  if (!row) return null;
  return {
    key: {
      ...keyFromRow({ ...row, rate_limit_per_hour: row.key_rate_limit, created_at: row.key_created_at }),
      hash: row.hash,
    },
    tenant: tenantFromRow({ ...row, id: row.tenant_id, name: row.tenant_name }),
  };
}

export async function findKey(db: D1Database, id: string): Promise<ApiKeyRecord | null> {
  const row = await db.prepare("SELECT * FROM api_keys WHERE id = ?").bind(id).first<KeyRow>();
  return row ? keyFromRow(row) : null;
}

export async function listKeys(db: D1Database, tenantId: string): Promise<ApiKeyRecord[]> {
  const { results } = await db
    .prepare("SELECT * FROM api_keys WHERE tenant_id = ? ORDER BY created_at, id")
    .bind(tenantId)
    .all<KeyRow>();
  return results.map(keyFromRow);
}

/** Revokes a key; revoking twice keeps the first revocation time. */
export async function revokeKey(db: D1Database, id: string): Promise<ApiKeyRecord | null> {
  await db
    .prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
    .bind(new Date().toISOString(), id)
    .run();
  forgetCallers({ keyId: id });
  return findKey(db, id);
}

function tenantFromRow(row: TenantRow): Tenant {
  return {
    id: row.id,
    name: row.name,
    maxTrustLevel: row.max_trust_level,
    rateLimitPerHour: row.rate_limit_per_hour,
    maxConcurrency: row.max_concurrency,
    storageLimitMb: row.storage_limit_mb,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function keyFromRow(row: KeyRow): ApiKeyRecord {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    prefix: row.prefix,
    name: row.name,
    rateLimitPerHour: row.rate_limit_per_hour,
    createdAt: row.created_at,
    revokedAt: row.revoked_at,
  };
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, entry]) => entry !== undefined)) as Partial<T>;
}
