/**
 * The DB binding's one operation: run a statement for a tenant, after the SQL policy has parsed it,
 * checked its kind against the cordon and confined every table to the tenant's namespace. Values go
 * in only as bound parameters. Rows and bytes of the answer are bounded; what a write adds to the
 * database counts against the tenant's storage limit (storage-quota.ts).
 */
import { ErrorCode } from "../errors";
import { checkStatement, type StatementKind } from "./sql";
import type { JobDatabase, SqlStatement, StatementResult } from "./job-database";
import type { BindingAnswer } from "./protocol";
import { storageRefusal, type StorageQuota } from "./storage-quota";

export const MAX_ROWS = 1_000;
export const MAX_RESULT_BYTES = 1024 * 1024;

/** The cordon policy names "ddl"; the SQL policy names each schema statement. */
const DDL_KINDS: readonly StatementKind[] = ["create_table", "create_index", "drop_table", "drop_index", "alter_table"];

export function allowedStatementKinds(policyKinds: readonly string[]): ReadonlySet<StatementKind> {
  const kinds = new Set<StatementKind>();
  for (const kind of policyKinds) {
    if (kind === "ddl") DDL_KINDS.forEach((ddl) => kinds.add(ddl));
    else kinds.add(kind as StatementKind);
  }
  return kinds;
}

export interface DatabaseScope {
  /** Lowercase [a-z0-9]{1,32}, derived from the tenant id: the namespace of the tenant's tables. */
  tenantKey: string;
  allowedKinds: ReadonlySet<StatementKind>;
  storage: StorageQuota;
}

/** Statements that cannot grow the database: they run even when the tenant is at its storage limit. */
const FREEING_KINDS: ReadonlySet<StatementKind> = new Set<StatementKind>(["delete", "drop_table", "drop_index"]);

export async function runStatement(
  db: JobDatabase,
  scope: DatabaseScope,
  sql: string,
  params: (string | number | boolean | null)[],
): Promise<BindingAnswer> {
  // One row past the cap tells the job its answer was cut.
  const verdict = checkStatement(sql, {
    ...scope,
    maxRows: MAX_ROWS + 1,
    paramLengths: params.map((value) => (typeof value === "string" ? value.length : String(value).length)),
  });
  if (!verdict.ok) {
    return {
      ok: false,
      error: {
        code: ErrorCode.SANDBOX_SECURITY_VIOLATION,
        message: `statement refused: ${verdict.message}`,
        rule: verdict.rule,
      },
    };
  }
  const statement: SqlStatement = {
    sql: verdict.sql,
    params: params.map((value) => (typeof value === "boolean" ? Number(value) : value)),
  };
  const reservedBytes = verdict.kind === "select" || FREEING_KINDS.has(verdict.kind) ? 0 : estimateBytes(sql, params);
  if (reservedBytes > 0) {
    const grant = await scope.storage.reserveWrite(reservedBytes);
    if (!grant.granted) return storageRefusal(grant, scope.storage.limitBytes);
  }
  // From here on, every path settles the reservation.
  try {
    const result =
      verdict.kind === "select"
        ? await db.read(statement)
        : await measuredWrite(db, statement, scope.storage, reservedBytes);
    const rows = result.results.slice(0, MAX_ROWS);
    const bytes = JSON.stringify(rows).length;
    if (bytes > MAX_RESULT_BYTES) {
      // A write's RETURNING rows come back after it is done: say so, or the job would retry it.
      const ran = verdict.kind === "select" ? "" : "the statement ran, but ";
      return {
        ok: false,
        error: {
          code: ErrorCode.SANDBOX_OUTPUT_TOO_LARGE,
          message: `${ran}its result is ${bytes} bytes; the limit is ${MAX_RESULT_BYTES}`,
        },
      };
    }
    return {
      ok: true,
      value: {
        rows,
        rowCount: rows.length,
        truncated: result.results.length > MAX_ROWS,
        changes: result.meta.changes,
      },
    };
  } catch (error) {
    // D1 names the physical tables; show the job the names it wrote.
    const message = (error instanceof Error ? error.message : String(error)).replaceAll(`t_${scope.tenantKey}__`, "");
    return { ok: false, error: { code: ErrorCode.SANDBOX_RUNTIME_ERROR, message: `the statement failed: ${message}` } };
  }
}

/**
 * Runs a statement that can write after one that does nothing, in one batch (a transaction that runs
 * alone in the database), and counts the difference of their `size_after` for the tenant in place of
 * what it reserved (all of it back if the statement failed).
 */
async function measuredWrite(
  db: JobDatabase,
  statement: SqlStatement,
  storage: StorageQuota,
  reservedBytes: number,
): Promise<StatementResult> {
  let measuredBytes = 0;
  try {
    const [before, after] = await db.batch([{ sql: "SELECT 1", params: [] }, statement]);
    if (!before || !after) throw new Error("D1 answered a batch of two with fewer results");
    measuredBytes = after.meta.size_after - before.meta.size_after;
    return after;
  } finally {
    await storage.settleWrite(reservedBytes, measuredBytes);
  }
}

/** What a write is expected to add: its text and its parameters (at least 1, so that it is checked). */
function estimateBytes(sql: string, params: readonly (string | number | boolean | null)[]): number {
  const encoder = new TextEncoder();
  let bytes = encoder.encode(sql).byteLength;
  for (const value of params) bytes += typeof value === "string" ? encoder.encode(value).byteLength : 8;
  return Math.max(1, bytes);
}
