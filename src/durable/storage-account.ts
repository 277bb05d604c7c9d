/**
 * A tenant's storage, as its ledger keeps it (bindings/storage-quota.ts says how it is measured and
 * enforced): what its writes have grown the jobs' database by, and the bytes of each of its KV entries
 * with their expiry. The tables are the ledger's (its MIGRATIONS); this module only reads and updates
 * them, inside the ledger's one-call-at-a-time object, so a check and the count it leads to are one
 * step: writes running at the same time each see the others.
 *
 * What is in flight lives in memory: the database writes' reservations, and the KV writes under way
 * (one per key at a time). If the object restarts meanwhile, the reservations are gone (those writes
 * are then counted once measured) and a KV entry keeps the larger of its old and new sizes: the
 * account errs high, never low.
 */

/** What a tenant stores, in bytes. */
export interface StorageUse {
  /** What the tenant's writes have grown the jobs' D1 database by (measured writes only). */
  dbBytes: number;
  /** Its KV entries not yet expired: key and value bytes of each. */
  kvBytes: number;
}

/** A write's answer: it may go ahead (and is counted), or why not. */
export type StorageGrant =
  | { granted: true }
  | { granted: false; reason: "storage_quota"; usedBytes: number }
  | { granted: false; reason: "key_busy" };

type Totals = { db_bytes: number; kv_bytes: number };
type KvEntry = { bytes: number; expiresAt: number | null };

export class StorageAccount {
  readonly #sql: SqlStorage;
  /** Bytes reserved by database writes under way. */
  #reservedBytes = 0;
  /** KV writes under way, by key: the entry before it (null: none), and after it (null: deleted). */
  readonly #kvWrites = new Map<string, { before: KvEntry | null; after: KvEntry | null }>();

  constructor(sql: SqlStorage) {
    this.#sql = sql;
  }

  use(now: number): StorageUse {
    this.#expire(now);
    const { db_bytes, kv_bytes } = this.#sql.exec<Totals>("SELECT db_bytes, kv_bytes FROM storage").one();
    return { dbBytes: db_bytes, kvBytes: kv_bytes };
  }

  /** Before a write to the database: refused when the tenant is at its limit, else `estimateBytes` is reserved. */
  reserveDatabase(estimateBytes: number, limitBytes: number, now: number): StorageGrant {
    const refusal = this.#refusal(limitBytes, now);
    if (refusal) return refusal;
    this.#reservedBytes += Math.max(0, Math.trunc(estimateBytes));
    return { granted: true };
  }

  /**
   * After a write to the database: its reservation goes, what it measured is added (negative: it
   * shrank the database). The measured total never goes below 0: space another tenant's write took
   * and this tenant's delete freed is no credit.
   */
  settleDatabase(reservedBytes: number, measuredBytes: number): void {
    this.#reservedBytes = Math.max(0, this.#reservedBytes - Math.max(0, Math.trunc(reservedBytes)));
    const delta = Number.isFinite(measuredBytes) ? Math.trunc(measuredBytes) : 0;
    this.#sql.exec("UPDATE storage SET db_bytes = MAX(0, db_bytes + ?)", delta);
  }

  /**
   * Before a KV put (`after`: the new entry) or delete (`after` null). A put is refused when the
   * tenant is at its limit, and either when a write to the key is already under way: KV's order and
   * the account's could differ. Meanwhile the entry counts the larger of its old and new sizes.
   */
  beginKvWrite(key: string, after: KvEntry | null, limitBytes: number, now: number): StorageGrant {
    if (this.#kvWrites.has(key)) return { granted: false, reason: "key_busy" };
    if (after !== null) {
      const refusal = this.#refusal(limitBytes, now);
      if (refusal) return refusal;
    }
    const before = this.#entry(key);
    this.#kvWrites.set(key, { before, after });
    if (after !== null && after.bytes > (before?.bytes ?? 0)) this.#setEntry(key, after);
    return { granted: true };
  }

  /** After the KV call: the entry is what the call left in KV. */
  endKvWrite(key: string, succeeded: boolean): void {
    const write = this.#kvWrites.get(key);
    if (!write) return;
    this.#kvWrites.delete(key);
    this.#setEntry(key, succeeded ? write.after : write.before);
  }

  #entry(key: string): KvEntry | null {
    const row = this.#sql
      .exec<{ bytes: number; expires_at: number | null }>("SELECT bytes, expires_at FROM kv_entries WHERE key = ?", key)
      .toArray()[0];
    return row ? { bytes: row.bytes, expiresAt: row.expires_at } : null;
  }

  #setEntry(key: string, entry: KvEntry | null): void {
    const gone = this.#sql
      .exec<{ bytes: number }>("DELETE FROM kv_entries WHERE key = ? RETURNING bytes", key)
      .toArray();
    for (const { bytes } of gone) this.#sql.exec("UPDATE storage SET kv_bytes = kv_bytes - ?", bytes);
    if (entry === null) return;
    this.#sql.exec(
      "INSERT INTO kv_entries (key, bytes, expires_at) VALUES (?, ?, ?)",
      key,
      entry.bytes,
      entry.expiresAt,
    );
    this.#sql.exec("UPDATE storage SET kv_bytes = kv_bytes + ?", entry.bytes);
  }

  #refusal(limitBytes: number, now: number): StorageGrant | null {
    const { dbBytes, kvBytes } = this.use(now);
    const usedBytes = dbBytes + kvBytes + this.#reservedBytes;
    return usedBytes >= limitBytes ? { granted: false, reason: "storage_quota", usedBytes } : null;
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
