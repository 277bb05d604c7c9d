/**
 * A tenant's storage, as its ledger keeps it (bindings/storage-quota.ts says how it is measured and
 * enforced): what its writes have grown the jobs' database by, and the bytes of each of its KV entries
 * with their expiry. The tables are the ledger's (its MIGRATIONS); this module only reads and updates
 * them, inside the ledger's one-call-at-a-time object, so a check and the count it leads to are one
 * step: writes running at the same time each see the others.
 */

/** What a tenant stores, in bytes. */
export interface StorageUse {
  /** What the tenant's writes have grown the jobs' D1 database by. */
  dbBytes: number;
  /** Its KV entries not yet expired: key and value bytes of each. */
  kvBytes: number;
}

/** A write's answer: it may go ahead (and is counted), or the tenant is at its limit. */
export type StorageGrant = { granted: true } | { granted: false; usedBytes: number };

type Totals = { db_bytes: number; kv_bytes: number };

export class StorageAccount {
  readonly #sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.#sql = sql;
  }

  use(now: number): StorageUse {
    this.#expire(now);
    const { db_bytes, kv_bytes } = this.#sql.exec<Totals>("SELECT db_bytes, kv_bytes FROM storage").one();
    return { dbBytes: db_bytes, kvBytes: kv_bytes };
  }

  /**
   * Before a write to the database: refused when the tenant is at its limit, else `estimateBytes` is
   * counted at once (`chargeDatabase` corrects it once the write is measured).
   */
  reserveDatabase(estimateBytes: number, limitBytes: number, now: number): StorageGrant {
    const refusal = this.#refusal(limitBytes, now);
    if (refusal) return refusal;
    this.chargeDatabase(estimateBytes);
    return { granted: true };
  }

  /** Adds what a write grew (or, negative, shrank) the database by; never below 0 (no credit for space another tenant took). */
  chargeDatabase(deltaBytes: number): void {
    const delta = Number.isFinite(deltaBytes) ? Math.trunc(deltaBytes) : 0;
    this.#sql.exec("UPDATE storage SET db_bytes = MAX(0, db_bytes + ?)", delta);
  }

  /**
   * Before a KV put: refused when the tenant is at its limit, else the entry is recorded (`bytes`
   * replaces what the key held; `expiresAt` null when it does not expire).
   */
  recordKvEntry(key: string, bytes: number, expiresAt: number | null, limitBytes: number, now: number): StorageGrant {
    const refusal = this.#refusal(limitBytes, now);
    if (refusal) return refusal;
    this.forgetKvEntry(key);
    this.#sql.exec("INSERT INTO kv_entries (key, bytes, expires_at) VALUES (?, ?, ?)", key, bytes, expiresAt);
    this.#sql.exec("UPDATE storage SET kv_bytes = kv_bytes + ?", bytes);
    return { granted: true };
  }

  /** After a KV delete, or a put that failed. */
  forgetKvEntry(key: string): void {
    const gone = this.#sql
      .exec<{ bytes: number }>("DELETE FROM kv_entries WHERE key = ? RETURNING bytes", key)
      .toArray();
    for (const { bytes } of gone) this.#sql.exec("UPDATE storage SET kv_bytes = kv_bytes - ?", bytes);
  }

  #refusal(limitBytes: number, now: number): StorageGrant | null {
    const { dbBytes, kvBytes } = this.use(now);
    const usedBytes = dbBytes + kvBytes;
    return usedBytes >= limitBytes ? { granted: false, usedBytes } : null;
  }

  /** KV drops an expired entry by itself; so does the account, when it is next read. */
  #expire(now: number): void {
    const { freed } = this.#sql
      .exec<{ freed: number | null }>(
        "SELECT SUM(bytes) AS freed FROM kv_entries WHERE expires_at IS NOT NULL AND expires_at <= ?",
        now,
      )
      .one();
    if (freed === null) return;
    this.#sql.exec("DELETE FROM kv_entries WHERE expires_at IS NOT NULL AND expires_at <= ?", now);
    this.#sql.exec("UPDATE storage SET kv_bytes = kv_bytes - ?", freed);
  }
}
