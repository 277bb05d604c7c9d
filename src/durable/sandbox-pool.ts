/**
 * The warm pool of node sandboxes in production (seed 002): one SandboxPool object per trust cordon
 * (named after it) keeps up to `size` Cloudflare Sandbox containers booted ahead of jobs, so a job skips
 * the container's start. The local sandbox host has its own pool (host/node/warm-pool.ts) with the same
 * rules:
 *
 * - Get (`take`): a job gets a ready sandbox (warm) or a fresh id (cold); either way the sandbox is
 *   the job's alone. Single use at every level: the job's home destroys it when the job ends
 *   (`finished`), so a sandbox never serves two jobs, let alone two tenants.
 * - Put (`put`): a sandbox the job never used (it was refused before anything ran) goes back.
 * - Destroy (`destroy`): one sandbox, now; Close (`close`): every idle one, and no refills until the
 *   next `take`.
 * - Refills run from the alarm, one container at a time, after each `take`. A ready sandbox is
 *   dropped before its container would sleep (`WARM_TTL_MS`), and replaced only while the cordon has
 *   had a job within `DEMAND_WINDOW_MS`: an idle deployment keeps no containers running.
 *
 * The one thing that cannot run outside Cloudflare, booting and destroying containers, is behind
 * `SandboxStarter`; everything else (`SandboxPoolCore`) runs on the object's SQLite, with a schema
 * version, and is tested in workerd with a starter that records calls.
 */
import { DurableObject } from "cloudflare:workers";
import { containerStarter } from "../node/cloudflare/container-sandbox";
import type { NodeCordon } from "../node/protocol";
import { sandboxNamespaceFor } from "../node/select-home";
import { migrateSqlite } from "./sqlite-schema";

/** Boots and destroys the sandbox behind an id (containerStarter in production). */
export interface SandboxStarter {
  warm(sandboxId: string): Promise<void>;
  destroy(sandboxId: string): Promise<void>;
}

export interface PoolLease {
  sandboxId: string;
  /** true: the container was booted before the job (a warm start). */
  warm: boolean;
}

export interface PoolStatus {
  size: number;
  ready: number;
  starting: number;
  assigned: number;
  hits: number;
  misses: number;
}

export interface PoolOptions {
  /** Sandboxes kept ready; 0 disables the pool (every job gets a fresh id). */
  size: number;
  now?: () => number;
  newId?: () => string;
}

/** A booted container sleeps after a minute without requests (SANDBOX_OPTIONS.sleepAfter); drop it before. */
export const WARM_TTL_MS = 50_000;
/** Refills stop this long after the cordon's last job. */
export const DEMAND_WINDOW_MS = 10 * 60_000;
/** After a failed boot, the next refill waits this long. */
export const FAILURE_BACKOFF_MS = 30_000;

const MIGRATIONS: readonly string[] = [
  `CREATE TABLE sandboxes (
     id TEXT PRIMARY KEY,
     state TEXT NOT NULL CHECK (state IN ('starting', 'ready', 'assigned')),
     execution_id TEXT UNIQUE,
     since INTEGER NOT NULL
   );
   CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);`,
];

type SandboxState = "starting" | "ready" | "assigned";

export class SandboxPoolCore {
  readonly #sql: SqlStorage;
  readonly #starter: SandboxStarter;
  readonly #size: number;
  readonly #now: () => number;
  readonly #newId: () => string;

  constructor(sql: SqlStorage, starter: SandboxStarter, options: PoolOptions) {
    migrateSqlite(sql, MIGRATIONS);
    this.#sql = sql;
    this.#starter = starter;
    this.#size = Math.max(0, Math.floor(options.size));
    this.#now = options.now ?? Date.now;
    this.#newId = options.newId ?? (() => `pool-${crypto.randomUUID()}`);
  }

  /** The job's sandbox: the oldest ready one that is still fresh, or a new id to start cold. */
  take(executionId: string): PoolLease {
    const existing = this.sandboxOf(executionId);
    if (existing) return { sandboxId: existing, warm: false };
    const now = this.#now();
    this.#setting("lastTakeAt", String(now));
    this.#setting("closed", "0");
    const ready = this.#sql
      .exec<{ id: string }>(
        "SELECT id FROM sandboxes WHERE state = 'ready' AND since > ? ORDER BY since LIMIT 1",
        now - WARM_TTL_MS,
      )
      .toArray()[0];
    const sandboxId = ready?.id ?? this.#newId();
    if (ready) {
      this.#sql.exec(
        "UPDATE sandboxes SET state = 'assigned', execution_id = ?, since = ? WHERE id = ?",
        executionId,
        now,
        sandboxId,
      );
    } else {
      this.#insert(sandboxId, "assigned", now, executionId);
    }
    if (this.#size > 0) this.#count(ready ? "hits" : "misses");
    return { sandboxId, warm: ready !== undefined };
  }

  sandboxOf(executionId: string): string | undefined {
    return this.#sql.exec<{ id: string }>("SELECT id FROM sandboxes WHERE execution_id = ?", executionId).toArray()[0]
      ?.id;
  }

  /** The job has ended and its home destroyed its sandbox. */
  finished(executionId: string): void {
    this.#sql.exec("DELETE FROM sandboxes WHERE execution_id = ?", executionId);
  }

  /** A sandbox its job never used goes back to the pool (a cold one is simply forgotten). */
  put(executionId: string, warm: boolean): void {
    if (!warm) return this.finished(executionId);
    this.#sql.exec(
      "UPDATE sandboxes SET state = 'ready', execution_id = NULL WHERE execution_id = ? AND state = 'assigned'",
      executionId,
    );
  }

  async destroy(sandboxId: string): Promise<void> {
    this.#sql.exec("DELETE FROM sandboxes WHERE id = ?", sandboxId);
    await this.#starter.destroy(sandboxId).catch(() => undefined);
  }

  /** Destroys every idle sandbox; no refills until the next take. Jobs in flight keep theirs. */
  async close(): Promise<void> {
    this.#setting("closed", "1");
    const idle = this.#sql
      .exec<{ id: string }>("SELECT id FROM sandboxes WHERE state IN ('starting', 'ready')")
      .toArray();
    this.#sql.exec("DELETE FROM sandboxes WHERE state IN ('starting', 'ready')");
    await Promise.all(idle.map(({ id }) => this.#starter.destroy(id).catch(() => undefined)));
  }

  /**
   * One round of upkeep: drops stale ready sandboxes, then boots new ones (one at a time) until the
   * pool is full, while there is demand. Returns when the next round is due, or null for none.
   */
  async refill(): Promise<number | null> {
    const now = this.#now();
    const stale = this.#sql
      .exec<{ id: string }>("SELECT id FROM sandboxes WHERE state = 'ready' AND since <= ?", now - WARM_TTL_MS)
      .toArray();
    for (const { id } of stale) await this.destroy(id);
    const lastTakeAt = Number(this.#readSetting("lastTakeAt") ?? 0);
    if (now - lastTakeAt > DEMAND_WINDOW_MS) return this.#nextExpiry();
    // Checked before each boot: a close() while one was booting stops the round.
    while (this.#readSetting("closed") !== "1" && this.#idleCount() < this.#size) {
      const sandboxId = this.#newId();
      this.#insert(sandboxId, "starting", this.#now());
      try {
        await this.#starter.warm(sandboxId);
      } catch {
        await this.destroy(sandboxId);
        return this.#now() + FAILURE_BACKOFF_MS;
      }
      // Only if still there: a close() or destroy() during the boot removed the row and destroyed
      // the container itself.
      this.#sql.exec(
        "UPDATE sandboxes SET state = 'ready', since = ? WHERE id = ? AND state = 'starting'",
        this.#now(),
        sandboxId,
      );
    }
    return this.#nextExpiry();
  }

  status(): PoolStatus {
    const counts = { starting: 0, ready: 0, assigned: 0 };
    for (const row of this.#sql.exec<{ state: SandboxState; n: number }>(
      "SELECT state, COUNT(*) AS n FROM sandboxes GROUP BY state",
    )) {
      counts[row.state] = row.n;
    }
    return {
      size: this.#size,
      ...counts,
      hits: Number(this.#readSetting("hits") ?? 0),
      misses: Number(this.#readSetting("misses") ?? 0),
    };
  }

  #idleCount(): number {
    return this.#sql
      .exec<{ n: number }>("SELECT COUNT(*) AS n FROM sandboxes WHERE state IN ('starting', 'ready')")
      .one().n;
  }

  /** When the oldest ready sandbox goes stale (its replacement is due then), or null. */
  #nextExpiry(): number | null {
    const oldest = this.#sql
      .exec<{ since: number | null }>("SELECT MIN(since) AS since FROM sandboxes WHERE state = 'ready'")
      .one().since;
    return oldest === null ? null : oldest + WARM_TTL_MS;
  }

  #insert(id: string, state: SandboxState, since: number, executionId: string | null = null): void {
    this.#sql.exec(
      "INSERT INTO sandboxes (id, state, execution_id, since) VALUES (?, ?, ?, ?)",
      id,
      state,
      executionId,
      since,
    );
  }

  #count(name: "hits" | "misses"): void {
    this.#setting(name, String(Number(this.#readSetting(name) ?? 0) + 1));
  }

  #setting(name: string, value: string): void {
    this.#sql.exec("INSERT OR REPLACE INTO settings (name, value) VALUES (?, ?)", name, value);
  }

  #readSetting(name: string): string | undefined {
    return this.#sql.exec<{ value: string }>("SELECT value FROM settings WHERE name = ?", name).toArray()[0]?.value;
  }
}

/** What the dispatcher's node home calls (over RPC); every method names the pool's cordon. */
export interface SandboxPoolApi {
  take(cordon: NodeCordon, executionId: string): Promise<PoolLease>;
  sandboxOf(cordon: NodeCordon, executionId: string): Promise<string | undefined>;
  finished(cordon: NodeCordon, executionId: string): Promise<void>;
  put(cordon: NodeCordon, executionId: string, warm: boolean): Promise<void>;
  close(cordon: NodeCordon): Promise<void>;
  status(cordon: NodeCordon): Promise<PoolStatus>;
}

/**
 * The object: a SandboxPoolCore on its storage, with the container starter of its cordon (known from
 * the first call, kept for the alarm) and the pool size from `CORDON_NODE_POOL_SIZE`.
 */
export class SandboxPool extends DurableObject<Env> implements SandboxPoolApi {
  #core: SandboxPoolCore | undefined;

  async take(cordon: NodeCordon, executionId: string): Promise<PoolLease> {
    const lease = this.#for(cordon).take(executionId);
    if (poolSize(this.env) > 0) await this.#scheduleRefill(Date.now());
    return lease;
  }

  async sandboxOf(cordon: NodeCordon, executionId: string): Promise<string | undefined> {
    return this.#for(cordon).sandboxOf(executionId);
  }

  async finished(cordon: NodeCordon, executionId: string): Promise<void> {
    this.#for(cordon).finished(executionId);
  }

  async put(cordon: NodeCordon, executionId: string, warm: boolean): Promise<void> {
    this.#for(cordon).put(executionId, warm);
  }

  async close(cordon: NodeCordon): Promise<void> {
    await this.#for(cordon).close();
  }

  async status(cordon: NodeCordon): Promise<PoolStatus> {
    return this.#for(cordon).status();
  }

  override async alarm(): Promise<void> {
    const cordon = this.ctx.storage.sql
      .exec<{ value: string }>("SELECT value FROM settings WHERE name = 'cordon'")
      .toArray()[0]?.value;
    if (!isNodeCordon(cordon)) return;
    const next = await this.#for(cordon).refill();
    if (next !== null) await this.ctx.storage.setAlarm(next);
  }

  async #scheduleRefill(at: number): Promise<void> {
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > at) await this.ctx.storage.setAlarm(at);
  }

  #for(cordon: NodeCordon): SandboxPoolCore {
    if (!this.#core) {
      this.#core = new SandboxPoolCore(this.ctx.storage.sql, containerStarter(sandboxNamespaceFor(this.env, cordon)), {
        size: poolSize(this.env),
      });
      this.ctx.storage.sql.exec("INSERT OR REPLACE INTO settings (name, value) VALUES ('cordon', ?)", cordon);
    }
    return this.#core;
  }
}

function isNodeCordon(value: string | undefined): value is NodeCordon {
  return value === "high" || value === "medium" || value === "low" || value === "untrusted";
}

/** `CORDON_NODE_POOL_SIZE` (a whole number, default 1): ready sandboxes per cordon. */
export function poolSize(env: Pick<Env, "CORDON_NODE_POOL_SIZE">): number {
  const value = Number(env.CORDON_NODE_POOL_SIZE);
  return Number.isInteger(value) && value >= 0 ? Math.min(value, 16) : 1;
}
