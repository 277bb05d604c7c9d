/**
 * One TenantLedger per tenant: admission and the journal of synchronous jobs.
 *
 * Admission: a sliding-window count of accepted executions (per tenant, and per key where the key has
 * its own limit) and the set of running executions (leases, keyed by execution id). A Durable Object
 * handles one call at a time, so a burst of parallel requests is admitted exactly up to the limit.
 *
 * Journal: a synchronous job runs in the request that sent it (no object of its own: a fresh object per
 * job costs more than the job), so the ledger keeps it from admission until its result is in the
 * execution log (D1). The job is written down in the same call that admits it; its result comes back
 * with `complete`, which answers at once; the log rows are written after, gathered into batches
 * (retried from the alarm; a list read first waits for them, see `logged`). A job whose request died is given up at its deadline by the alarm, with a stored result.
 *
 * State lives in the object's SQLite storage with a schema version. Every method returns data and
 * never throws across RPC for a refusal.
 */
import { DurableObject } from "cloudflare:workers";
import { migrateSqlite } from "./sqlite-schema";
import { StorageAccount, type StorageGrant, type StorageUse } from "./storage-account";
import type { TrackedState } from "./execution-tracker";
import { ErrorCode } from "../errors";
import { cancelOnItsHome, durableHome } from "../jobs/homes";
import { abandonedResult, type PreparedIdentity } from "../results";
import type { ExecutionProgress, ExecutionRequest, ExecutionResult } from "../schemas";
import { readStoredResult, saveExecutionStatement } from "../store/executions";
import { storableResult } from "../store/storable";

/** A request's place in its tenant's (and key's) hourly window. */
export interface RateRequest {
  keyId: string;
  tenantLimit: number;
  keyLimit: number | null;
  windowMs: number;
}

export interface AdmitRequest extends RateRequest {
  /** The job's execution id, which is also its lease's id. */
  executionId: string;
  maxConcurrency: number;
  /** A lease that is never released (a dispatcher died mid-job) frees itself after this long. */
  leaseMs: number;
  /** A synchronous job: the ledger journals it until its result is in the execution log. */
  journal?: JournalEntry;
}

/** What the ledger needs of a synchronous job to give it up, or cancel it, without its runner. */
export interface JournalEntry {
  id: string;
  tenantId: string;
  codeSha256: string;
  acceptedAt: number;
  /** Epoch ms after which a job that has not reported is given up as timed out. */
  deadline: number;
  metadata: ExecutionRequest["metadata"];
  prepared: PreparedIdentity & { executionId: string };
}

export type AdmitResult =
  | { allowed: true; limit: number; remaining: number; resetMs: number }
  | {
      allowed: false;
      reason: "tenant_rate" | "key_rate" | "concurrency";
      limit: number;
      remaining: number;
      resetMs: number;
      retryAfterMs: number;
    };
type RateRefusal = Extract<AdmitResult, { allowed: false }>;

/** What the tenant has used of its limits, as the ledger keeps it. */
export interface LedgerUsage {
  /** The hourly window (a refusal when it is full, with when it has room again). */
  rate: AdmitResult;
  /** Concurrency slots held: running jobs, and cancelled ones whose runner has not stopped yet. */
  running: number;
  storage: StorageUse;
}

/** Where an execution of this tenant is held while it is not (yet) in the execution log. */
export type LedgerLocation =
  { at: "ledger"; state: Extract<TrackedState, { found: true }> } | { at: "tracker" } | { at: "log" };

/** The ledger as its callers see it (see ExecutionTrackerApi for why stubs use a plain interface). */
export interface TenantLedgerApi {
  admit(request: AdmitRequest): Promise<AdmitResult>;
  charge(request: RateRequest): Promise<AdmitResult>;
  peek(request: RateRequest): Promise<AdmitResult>;
  complete(executionId: string, result: ExecutionResult): Promise<ExecutionResult | null>;
  release(executionId: string): Promise<void>;
  locate(executionId: string): Promise<LedgerLocation>;
  wait(executionId: string, timeoutMs: number): Promise<LedgerLocation>;
  cancel(executionId: string): Promise<LedgerLocation>;
  forget(executionId: string): Promise<void>;
  logged(): Promise<void>;
  storageUse(): Promise<StorageUse>;
  reserveStorage(estimateBytes: number, limitBytes: number): Promise<StorageGrant>;
  settleStorage(reservedBytes: number, measuredBytes: number): Promise<void>;
  beginKvWrite(key: string, bytes: number | null, expiresAt: number | null, limitBytes: number): Promise<StorageGrant>;
  endKvWrite(key: string, succeeded: boolean): Promise<void>;
  usage(request: RateRequest): Promise<LedgerUsage>;
}

/** How a caller refused for concurrency should wait before retrying. */
const CONCURRENCY_RETRY_MS = 1_000;
/** A failed write to the execution log is tried again this much later. */
const LOG_RETRY_MS = 30_000;
/**
 * How long a finished result waits for others to join its write to the execution log. Each write is a
 * D1 batch whose fixed cost dwarfs a row's (measured locally: ≈ 1.1 ms of CPU per job when gathered
 * over 100 ms, ≈ 0.2–0.4 ms over 1 s); reads never wait for it (see `logged`).
 */
const LOG_GATHER_MS = 1_000;
/** Results written to the execution log in one batch; a full batch is written without waiting. */
const LOG_BATCH = 50;

const MIGRATIONS: readonly string[] = [
  `CREATE TABLE hits (ts INTEGER NOT NULL, key_id TEXT NOT NULL);
   CREATE INDEX hits_by_ts ON hits (ts);
   CREATE TABLE leases (id TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);`,
  // A row per synchronous job: running while result_json is null, then waiting for the log.
  `CREATE TABLE journal (
     id TEXT PRIMARY KEY,
     entry_json TEXT NOT NULL,
     deadline INTEGER NOT NULL,
     result_json TEXT
   );
   CREATE INDEX journal_running ON journal (deadline) WHERE result_json IS NULL;`,
  // Counts of the hits in the window by key, kept as hits come and expire: admission reads a count
  // instead of counting rows, so its cost does not grow with the tenant's rate limit.
  `CREATE TABLE hit_counts (key_id TEXT PRIMARY KEY, n INTEGER NOT NULL);
   INSERT INTO hit_counts (key_id, n) SELECT key_id, COUNT(*) FROM hits GROUP BY key_id;
   CREATE INDEX hits_by_key ON hits (key_id, ts);`,
  // Bytes the tenant's writes have grown the jobs' database by (bindings/storage-quota.ts).
  `CREATE TABLE storage (id INTEGER PRIMARY KEY CHECK (id = 1), used_bytes INTEGER NOT NULL);
   INSERT INTO storage (id, used_bytes) VALUES (1, 0);`,
  // The tenant's KV entries count against the same limit (storage-account.ts).
  `ALTER TABLE storage RENAME COLUMN used_bytes TO db_bytes;
   ALTER TABLE storage ADD COLUMN kv_bytes INTEGER NOT NULL DEFAULT 0;
   CREATE TABLE kv_entries (key TEXT PRIMARY KEY, bytes INTEGER NOT NULL, expires_at INTEGER);
   CREATE INDEX kv_entries_by_expiry ON kv_entries (expires_at) WHERE expires_at IS NOT NULL;`,
];

type JournalRow = {
  id: string;
  entry_json: string;
  deadline: number;
  result_json: string | null;
};

export class TenantLedger extends DurableObject<Env> implements TenantLedgerApi {
  readonly #sql: SqlStorage;
  readonly #storage: StorageAccount;
  readonly #waiters = new Map<string, Set<() => void>>();
  /** The rate window's totals (undefined: to be read from storage, as after a start or an expiry). */
  #window: { tenantHits: number; oldest: number | null } | undefined;
  /** The alarm as last set (undefined: not read yet since this object started). */
  #alarmAt: number | null | undefined;
  /** The write to the execution log under way or gathering results, if any. */
  #logging: Promise<void> | null = null;
  /** Ends the gathering wait of the next log write early. */
  #writeNow: (() => void) | null = null;
  /** Results that joined the log write now gathering. */
  #gathered = 0;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    migrateSqlite(this.#sql, MIGRATIONS);
    this.#storage = new StorageAccount(this.#sql);
  }

  async admit(request: AdmitRequest): Promise<AdmitResult> {
    const verdict = this.#acquire(request);
    if (verdict.allowed && request.journal) {
      const entry = request.journal;
      this.#sql.exec(
        "INSERT INTO journal (id, entry_json, deadline) VALUES (?, ?, ?)",
        entry.id,
        JSON.stringify(entry),
        entry.deadline,
      );
      await this.#armBy(entry.deadline);
    }
    return verdict;
  }

  /**
   * Counts a request that had its code checked but runs nothing (validation, or code the checks
   * refused) against the window: checking 256 KiB of code costs the dispatcher up to a quarter of a
   * second, so it is not free. No concurrency slot is taken.
   */
  async charge(request: RateRequest): Promise<AdmitResult> {
    const now = Date.now();
    const verdict = this.#rateVerdict(request, now);
    if (!verdict.allowed) return verdict;
    this.#recordHit(request.keyId, now);
    return { ...verdict, remaining: verdict.remaining - 1 };
  }

  /** Whether the window has room, recording nothing. */
  async peek(request: RateRequest): Promise<AdmitResult> {
    return this.#rateVerdict(request, Date.now());
  }

  /**
   * The job's runner answered. Answers with the job's result: this one, or the one it already has if
   * it was cancelled or given up meanwhile; null if the ledger no longer holds it (its result is in
   * the execution log).
   */
  async complete(executionId: string, result: ExecutionResult): Promise<ExecutionResult | null> {
    const row = this.#journalRow(executionId);
    const kept = row?.result_json ?? null;
    if (!row || kept !== null) {
      // Cancelled meanwhile: its runner has stopped now, so its slot is free.
      this.#sql.exec("DELETE FROM leases WHERE id = ?", stoppingLeaseId(executionId));
      return kept === null ? null : readStoredResult(kept);
    }
    const stored = storableResult(result);
    this.#settle(executionId, stored);
    return stored;
  }

  /** Frees the concurrency slot of an asynchronous job (its tracker journals it). */
  async release(executionId: string): Promise<void> {
    this.#sql.exec("DELETE FROM leases WHERE id = ?", executionId);
  }

  async locate(executionId: string): Promise<LedgerLocation> {
    return this.#locate(executionId);
  }

  /** Where the job is once it has finished or after `timeoutMs`, whichever comes first. */
  async wait(executionId: string, timeoutMs: number): Promise<LedgerLocation> {
    const current = this.#locate(executionId);
    if (current.at !== "ledger" || current.state.finished) return current;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      const waiters = this.#waiters.get(executionId) ?? new Set();
      this.#waiters.set(executionId, waiters);
      function done() {
        clearTimeout(timer);
        waiters.delete(done);
        resolve();
      }
      waiters.add(done);
    });
    return this.#locate(executionId);
  }

  /** Ends a running synchronous job as cancelled and stops its runner where the platform allows. */
  async cancel(executionId: string): Promise<LedgerLocation> {
    const row = this.#journalRow(executionId);
    if (row && row.result_json === null) {
      const entry = JSON.parse(row.entry_json) as JournalEntry;
      this.#settle(executionId, given(entry, ErrorCode.SANDBOX_CANCELLED, "the job was cancelled by its caller"), {
        stoppedBy: entry.deadline,
      });
      await cancelOnItsHome(durableHome(this.env, this.ctx), entry.prepared);
    }
    return this.#locate(executionId);
  }

  /**
   * Drops a finished job's copy before its log row is deleted. A log write under way is awaited first,
   * so it cannot land after the deletion.
   */
  async forget(executionId: string): Promise<void> {
    await this.#loggedNow();
    this.#sql.exec("DELETE FROM journal WHERE id = ? AND result_json IS NOT NULL", executionId);
  }

  /**
   * Resolves once every result completed so far is in the execution log (or its write failed and waits
   * for the alarm), so a list read after it shows every job the tenant has been answered for.
   */
  async logged(): Promise<void> {
    await this.#loggedNow();
  }

  /** What the tenant stores in the jobs' database and KV, as charged so far. */
  async storageUse(): Promise<StorageUse> {
    return this.#storage.use(Date.now());
  }

  /** Before a write to the jobs' database: refused at the limit, else the estimate is reserved. */
  async reserveStorage(estimateBytes: number, limitBytes: number): Promise<StorageGrant> {
    return this.#storage.reserveDatabase(estimateBytes, limitBytes, Date.now());
  }

  /** After a write to the jobs' database: what it measured replaces what it reserved. */
  async settleStorage(reservedBytes: number, measuredBytes: number): Promise<void> {
    this.#storage.settleDatabase(reservedBytes, measuredBytes);
  }

  /** Before a KV put (`bytes`: the entry's key and value) or delete (`bytes` null). */
  async beginKvWrite(
    key: string,
    bytes: number | null,
    expiresAt: number | null,
    limitBytes: number,
  ): Promise<StorageGrant> {
    const after = bytes === null ? null : { bytes: Math.max(0, Math.trunc(bytes)), expiresAt };
    return this.#storage.beginKvWrite(String(key), after, limitBytes, Date.now());
  }

  /** After the KV call began by `beginKvWrite`, whether or not it succeeded. */
  async endKvWrite(key: string, succeeded: boolean): Promise<void> {
    this.#storage.endKvWrite(String(key), succeeded === true);
  }

  /** The tenant's use of its hourly window, its concurrency slots and its storage, recording nothing. */
  async usage(request: RateRequest): Promise<LedgerUsage> {
    const now = Date.now();
    this.#dropExpiredLeases(now);
    return {
      rate: this.#rateVerdict(request, now),
      running: this.#count("SELECT COUNT(*) AS n FROM leases"),
      storage: this.#storage.use(now),
    };
  }

  /** Gives up jobs past their deadline, retries the log, and wakes again for the next deadline. */
  override async alarm(): Promise<void> {
    this.#alarmAt = null;
    const overdue = this.#sql
      .exec<JournalRow>("SELECT * FROM journal WHERE result_json IS NULL AND deadline <= ?", Date.now())
      .toArray();
    const stopping: Promise<unknown>[] = [];
    for (const row of overdue) {
      const entry = JSON.parse(row.entry_json) as JournalEntry;
      this.#settle(
        row.id,
        given(entry, ErrorCode.SANDBOX_TIMEOUT, "the runner never reported; the job was given up at its deadline"),
      );
      // Given up here, it must not run on there (a job still waiting on the local host, say).
      stopping.push(cancelOnItsHome(durableHome(this.env, this.ctx), entry.prepared).catch(() => undefined));
    }
    await Promise.all([this.#loggedNow(), ...stopping]);
    const next = this.#sql
      .exec<{ deadline: number | null }>("SELECT MIN(deadline) AS deadline FROM journal WHERE result_json IS NULL")
      .one().deadline;
    if (next !== null) await this.#armBy(next);
  }

  #acquire(request: AdmitRequest): AdmitResult {
    const now = Date.now();
    const verdict = this.#rateVerdict(request, now);
    if (!verdict.allowed) return verdict;
    if (this.#runningCount(request.maxConcurrency, now) >= request.maxConcurrency) {
      return { ...verdict, allowed: false, reason: "concurrency", retryAfterMs: CONCURRENCY_RETRY_MS };
    }
    this.#recordHit(request.keyId, now);
    this.#sql.exec("INSERT INTO leases (id, expires_at) VALUES (?, ?)", request.executionId, now + request.leaseMs);
    return { ...verdict, remaining: verdict.remaining - 1 };
  }

  /** The tenant's and the key's window: room (with the tenant's status), or why not. */
  #rateVerdict(request: RateRequest, now: number): Extract<AdmitResult, { allowed: true }> | RateRefusal {
    this.#expireHits(now - request.windowMs, now);
    const { tenantHits, oldest } = this.#windowTotals();
    const resetMs = oldest === null ? request.windowMs : oldest + request.windowMs - now;
    const status = { limit: request.tenantLimit, remaining: Math.max(0, request.tenantLimit - tenantHits), resetMs };

    if (tenantHits >= request.tenantLimit) {
      return { allowed: false, reason: "tenant_rate", ...status, retryAfterMs: resetMs };
    }
    if (request.keyLimit !== null) {
      const keyHits = this.#count("SELECT COALESCE(SUM(n), 0) AS n FROM hit_counts WHERE key_id = ?", request.keyId);
      if (keyHits >= request.keyLimit) {
        const keyOldest = this.#sql
          .exec<{ ts: number }>("SELECT MIN(ts) AS ts FROM hits WHERE key_id = ?", request.keyId)
          .one().ts;
        const keyReset = keyOldest + request.windowMs - now;
        return {
          allowed: false,
          reason: "key_rate",
          limit: request.keyLimit,
          remaining: 0,
          resetMs: keyReset,
          retryAfterMs: keyReset,
        };
      }
    }
    return { allowed: true, ...status };
  }

  #recordHit(keyId: string, now: number): void {
    const { tenantHits, oldest } = this.#windowTotals();
    this.#sql.exec("INSERT INTO hits (ts, key_id) VALUES (?, ?)", now, keyId);
    this.#sql.exec(
      "INSERT INTO hit_counts (key_id, n) VALUES (?, 1) ON CONFLICT (key_id) DO UPDATE SET n = n + 1",
      keyId,
    );
    this.#window = { tenantHits: tenantHits + 1, oldest: oldest ?? now };
  }

  /**
   * Drops the hits that have left the window (taking them off their key's count) and the leases that
   * have expired. Admission runs this on every call, so it reads the window from memory and touches
   * storage only when the oldest hit has actually left it.
   */
  #expireHits(windowStart: number, now: number): void {
    const { oldest } = this.#windowTotals();
    if (oldest === null || oldest > windowStart) return;
    const expired = this.#sql
      .exec<{ key_id: string }>("DELETE FROM hits WHERE ts <= ? RETURNING key_id", windowStart)
      .toArray();
    const byKey = new Map<string, number>();
    for (const { key_id } of expired) byKey.set(key_id, (byKey.get(key_id) ?? 0) + 1);
    for (const [keyId, gone] of byKey) {
      this.#sql.exec("UPDATE hit_counts SET n = n - ? WHERE key_id = ?", gone, keyId);
    }
    this.#sql.exec("DELETE FROM hit_counts WHERE n <= 0");
    this.#dropExpiredLeases(now);
    this.#window = undefined;
  }

  /**
   * The window's admissions and when the oldest happened (null: none), from memory once read: this
   * object is the only writer.
   */
  #windowTotals(): { tenantHits: number; oldest: number | null } {
    this.#window ??= {
      tenantHits: this.#count("SELECT COALESCE(SUM(n), 0) AS n FROM hit_counts"),
      oldest: this.#sql.exec<{ ts: number | null }>("SELECT MIN(ts) AS ts FROM hits").one().ts,
    };
    return this.#window;
  }

  /** Leases whose dispatcher died before releasing them. */
  #dropExpiredLeases(now: number): void {
    this.#sql.exec("DELETE FROM leases WHERE expires_at <= ?", now);
  }

  /**
   * Jobs holding a slot. An expired lease (its dispatcher died) is dropped only when the count would
   * refuse a job: below the cap it makes no difference, and the common path stays one read.
   */
  #runningCount(maxConcurrency: number, now: number): number {
    const held = this.#count("SELECT COUNT(*) AS n FROM leases");
    if (held < maxConcurrency) return held;
    this.#dropExpiredLeases(now);
    return this.#count("SELECT COUNT(*) AS n FROM leases");
  }

  /**
   * Records a journaled job's final result, frees its slot, wakes its waiters and sends it to the log.
   * `stoppedBy`: the slot stays held, under another id, until the runner answers (`complete`) or this
   * time (the job's deadline, when the ledger would have given it up). A cancelled isolate in
   * production runs on to its CPU limit: a slot freed at once would let a tenant run any number of
   * jobs at a time by cancelling each one.
   */
  #settle(executionId: string, result: ExecutionResult, options: { stoppedBy?: number } = {}): void {
    this.#sql.exec("UPDATE journal SET result_json = ? WHERE id = ?", JSON.stringify(result), executionId);
    if (options.stoppedBy !== undefined) {
      // Under its own id the job is no longer "leased" to #locate, which would send lookups to a tracker.
      this.#sql.exec(
        "UPDATE leases SET id = ?, expires_at = MIN(expires_at, ?) WHERE id = ?",
        stoppingLeaseId(executionId),
        options.stoppedBy,
        executionId,
      );
    } else {
      this.#sql.exec("DELETE FROM leases WHERE id = ?", executionId);
    }
    for (const wake of [...(this.#waiters.get(executionId) ?? [])]) wake();
    this.#waiters.delete(executionId);
    this.#sendToLog();
  }

  /**
   * Starts a log write unless one is under way. It first waits LOG_GATHER_MS for more results to join
   * its batch, or until a batch is full (a result is served from here meanwhile): one write for a
   * burst instead of one per job.
   */
  #sendToLog(): void {
    if (this.#logging) {
      if (this.#writeNow && ++this.#gathered >= LOG_BATCH) this.#writeNow();
      return;
    }
    this.#gathered = 1;
    const gathered = new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.#writeNow?.(), LOG_GATHER_MS);
      this.#writeNow = () => {
        clearTimeout(timer);
        this.#writeNow = null;
        resolve();
      };
    });
    this.#logging = gathered.then(() => this.#writeLog()).finally(() => (this.#logging = null));
    this.ctx.waitUntil(this.#logging);
  }

  /** Writes what is waiting for the log now, and resolves once it is written (or has failed). */
  async #loggedNow(): Promise<void> {
    // After a restart, finished results can be waiting here with no write gathering them.
    if (
      !this.#logging &&
      this.#sql.exec("SELECT 1 FROM journal WHERE result_json IS NOT NULL LIMIT 1").toArray().length
    ) {
      this.#sendToLog();
    }
    this.#writeNow?.();
    await this.#logging;
  }

  /**
   * Writes finished jobs to the execution log in batches and drops them here once written. Results that
   * finish meanwhile join the next batch; a failed write is retried from the alarm.
   */
  async #writeLog(): Promise<void> {
    for (;;) {
      const rows = this.#sql
        .exec<{ id: string; result_json: string }>(
          "SELECT id, result_json FROM journal WHERE result_json IS NOT NULL LIMIT ?",
          LOG_BATCH,
        )
        .toArray();
      if (rows.length === 0) return;
      try {
        await this.env.DB.batch(
          rows.map((row) => saveExecutionStatement(this.env.DB, readStoredResult(row.result_json), { tracked: false })),
        );
      } catch (error) {
        console.error(JSON.stringify({ event: "execution_log_failed", rows: rows.length, message: String(error) }));
        await this.#armBy(Date.now() + LOG_RETRY_MS);
        return;
      }
      for (const row of rows) {
        this.#sql.exec("DELETE FROM journal WHERE id = ? AND result_json IS NOT NULL", row.id);
      }
    }
  }

  #locate(executionId: string): LedgerLocation {
    const row = this.#journalRow(executionId);
    if (row) return { at: "ledger", state: stateOf(row) };
    const leased = this.#sql.exec("SELECT 1 FROM leases WHERE id = ?", executionId).toArray().length > 0;
    return leased ? { at: "tracker" } : { at: "log" };
  }

  /** Sets the alarm to `at` unless it is already due sooner. */
  async #armBy(at: number): Promise<void> {
    if (this.#alarmAt === undefined) this.#alarmAt = await this.ctx.storage.getAlarm();
    if (this.#alarmAt !== null && this.#alarmAt <= at) return;
    await this.ctx.storage.setAlarm(at);
    this.#alarmAt = at;
  }

  #journalRow(executionId: string): JournalRow | undefined {
    return this.#sql.exec<JournalRow>("SELECT * FROM journal WHERE id = ?", executionId).toArray()[0];
  }

  #count(query: string, ...bindings: string[]): number {
    return this.#sql.exec<{ n: number }>(query, ...bindings).one().n;
  }
}

function stateOf(row: JournalRow): Extract<TrackedState, { found: true }> {
  const entry = JSON.parse(row.entry_json) as JournalEntry;
  if (row.result_json !== null) {
    return { found: true, tenantId: entry.tenantId, finished: true, result: readStoredResult(row.result_json) };
  }
  return { found: true, tenantId: entry.tenantId, finished: false, progress: progressOf(entry) };
}

function progressOf(entry: JournalEntry): ExecutionProgress {
  return {
    id: entry.id,
    status: "running",
    runtime: entry.prepared.runtime,
    trustLevel: entry.prepared.trustLevel,
    createdAt: new Date(entry.acceptedAt).toISOString(),
  };
}

function given(
  entry: JournalEntry,
  code: typeof ErrorCode.SANDBOX_CANCELLED | typeof ErrorCode.SANDBOX_TIMEOUT,
  message: string,
): ExecutionResult {
  const record = {
    id: entry.id,
    tenantId: entry.tenantId,
    codeSha256: entry.codeSha256,
    createdAt: new Date(entry.acceptedAt),
    finishedAt: new Date(),
  };
  return abandonedResult(record, { metadata: entry.metadata }, entry.prepared, code, message);
}

/** The lease of a cancelled synchronous job whose runner has not answered yet. */
function stoppingLeaseId(executionId: string): string {
  return `${executionId}#stopping`;
}
