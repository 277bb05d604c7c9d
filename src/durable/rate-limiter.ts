/**
 * One RateLimiter per tenant: a sliding-window count of accepted executions (per tenant, and per key
 * where the key has its own limit) and the set of running executions (leases). A Durable Object handles
 * one call at a time, so a burst of parallel requests is admitted exactly up to the limit.
 *
 * State lives in the object's SQLite storage with a schema version row. Every method returns data and
 * never throws across RPC for a refusal.
 */
import { DurableObject } from "cloudflare:workers";
import { migrateSqlite } from "./sqlite-schema";

export interface AcquireRequest {
  keyId: string;
  tenantLimit: number;
  keyLimit: number | null;
  windowMs: number;
  maxConcurrency: number;
  /** A lease that is never released (a dispatcher died mid-job) frees itself after this long. */
  leaseMs: number;
}

export type AcquireResult =
  | { allowed: true; leaseId: string; limit: number; remaining: number; resetMs: number }
  | {
      allowed: false;
      reason: "tenant_rate" | "key_rate" | "concurrency";
      limit: number;
      remaining: number;
      resetMs: number;
      retryAfterMs: number;
    };

/** How long a caller refused for concurrency should wait before retrying. */
const CONCURRENCY_RETRY_MS = 1_000;

const MIGRATIONS: readonly string[] = [
  `CREATE TABLE hits (ts INTEGER NOT NULL, key_id TEXT NOT NULL);
   CREATE INDEX hits_by_ts ON hits (ts);
   CREATE TABLE leases (id TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);`,
];

export class RateLimiter extends DurableObject<Env> {
  readonly #sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    migrateSqlite(this.#sql, MIGRATIONS);
  }

  acquire(request: AcquireRequest): AcquireResult {
    const now = Date.now();
    const windowStart = now - request.windowMs;
    this.#sql.exec("DELETE FROM hits WHERE ts <= ?", windowStart);
    this.#sql.exec("DELETE FROM leases WHERE expires_at <= ?", now);

    const tenantHits = this.#count("SELECT COUNT(*) AS n FROM hits");
    const oldest = this.#sql.exec<{ ts: number | null }>("SELECT MIN(ts) AS ts FROM hits").one().ts;
    const resetMs = oldest === null ? request.windowMs : oldest + request.windowMs - now;
    const status = { limit: request.tenantLimit, remaining: Math.max(0, request.tenantLimit - tenantHits), resetMs };

    if (tenantHits >= request.tenantLimit) {
      return { allowed: false, reason: "tenant_rate", ...status, retryAfterMs: resetMs };
    }
    if (request.keyLimit !== null) {
      const keyHits = this.#count("SELECT COUNT(*) AS n FROM hits WHERE key_id = ?", request.keyId);
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
    if (this.#count("SELECT COUNT(*) AS n FROM leases") >= request.maxConcurrency) {
      return { allowed: false, reason: "concurrency", ...status, retryAfterMs: CONCURRENCY_RETRY_MS };
    }

    const leaseId = crypto.randomUUID();
    this.#sql.exec("INSERT INTO hits (ts, key_id) VALUES (?, ?)", now, request.keyId);
    this.#sql.exec("INSERT INTO leases (id, expires_at) VALUES (?, ?)", leaseId, now + request.leaseMs);
    return {
      allowed: true,
      leaseId,
      limit: request.tenantLimit,
      remaining: status.remaining - 1,
      resetMs: oldest === null ? request.windowMs : resetMs,
    };
  }

  release(leaseId: string): void {
    this.#sql.exec("DELETE FROM leases WHERE id = ?", leaseId);
  }

  #count(query: string, ...bindings: string[]): number {
    return this.#sql.exec<{ n: number }>(query, ...bindings).one().n;
  }
}
