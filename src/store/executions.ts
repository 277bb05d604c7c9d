/**
 * The execution log in D1: one row per accepted job, holding its final result. The whole result is
 * kept as JSON (parsed back through its schema on read); the columns beside it exist for scoping,
 * filtering and listing. Every read is scoped to a tenant.
 */
import { CordonError, ErrorCode } from "../errors";
import { emptyMetrics } from "../results";
import { ExecutionResult, type ListQuery } from "../schemas";

export interface LogOptions {
  /** An ExecutionTracker holds a copy of the result (an asynchronous job), to be deleted with the row. */
  tracked: boolean;
}

export async function saveExecution(db: D1Database, result: ExecutionResult, options: LogOptions): Promise<void> {
  await saveExecutionStatement(db, result, options).run();
}

/** The row of a finished job; writing it twice (a retried batch) keeps the first. */
export function saveExecutionStatement(
  db: D1Database,
  result: ExecutionResult,
  options: LogOptions,
): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO executions (id, tenant_id, trust_level, runtime, status, success, error_code, code_sha256, result_json, created_at, finished_at, tracked)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO NOTHING`,
    )
    .bind(
      result.id,
      result.tenantId,
      result.trustLevel,
      result.runtime,
      result.status,
      result.success ? 1 : 0,
      result.error?.code ?? null,
      result.codeSha256,
      JSON.stringify(result),
      result.createdAt,
      result.finishedAt,
      options.tracked ? 1 : 0,
    );
}

/**
 * Reads a stored result. Results stored before a metric existed lack it; they get the metric's zero
 * value rather than failing the read, so adding a metric never breaks old records.
 */
export function readStoredResult(json: string): ExecutionResult {
  const raw: unknown = JSON.parse(json);
  if (raw && typeof raw === "object" && "metrics" in raw && raw.metrics && typeof raw.metrics === "object") {
    const metrics = raw.metrics as Record<string, unknown>;
    const duration = typeof metrics.duration === "number" ? metrics.duration : 0;
    return ExecutionResult.parse({ ...raw, metrics: { ...emptyMetrics(duration), ...metrics } });
  }
  return ExecutionResult.parse(raw);
}

export interface LoggedExecution {
  result: ExecutionResult;
  tracked: boolean;
}

export async function findExecution(db: D1Database, tenantId: string, id: string): Promise<LoggedExecution | null> {
  const row = await db
    .prepare("SELECT result_json, tracked FROM executions WHERE id = ? AND tenant_id = ?")
    .bind(id, tenantId)
    .first<{ result_json: string; tracked: number }>();
  return row ? { result: readStoredResult(row.result_json), tracked: row.tracked === 1 } : null;
}

/** A listed execution: the result without its output and logs (fetch one by id for those). */
export type ExecutionSummary = Omit<ExecutionResult, "output" | "logs" | "tests">;

export async function deleteExecution(db: D1Database, tenantId: string, id: string): Promise<void> {
  await db.prepare("DELETE FROM executions WHERE id = ? AND tenant_id = ?").bind(id, tenantId).run();
}

export interface ExecutionPage {
  executions: ExecutionSummary[];
  nextCursor: string | null;
}

/** The statement of one page of a tenant's history (newest first, after the cursor, filtered). */
export function historyStatement(tenantId: string, query: ListQuery): { sql: string; bindings: (string | number)[] } {
  const clauses = ["tenant_id = ?"];
  const bindings: (string | number)[] = [tenantId];
  if (query.status) {
    clauses.push("status = ?");
    bindings.push(query.status);
  }
  if (query.runtime) {
    clauses.push("runtime = ?");
    bindings.push(query.runtime);
  }
  const after = query.cursor === undefined ? null : decodeCursor(query.cursor);
  if (query.cursor !== undefined && after === null) {
    throw new CordonError(ErrorCode.VALIDATION_ERROR, "the cursor is not one this API returned", { field: "cursor" });
  }
  if (after) {
    clauses.push("(created_at < ? OR (created_at = ? AND id < ?))");
    bindings.push(after.createdAt, after.createdAt, after.id);
  }
  return {
    sql: `SELECT result_json FROM executions WHERE ${clauses.join(" AND ")} ORDER BY created_at DESC, id DESC LIMIT ?`,
    bindings: [...bindings, query.limit + 1],
  };
}

export async function listExecutions(db: D1Database, tenantId: string, query: ListQuery): Promise<ExecutionPage> {
  const { sql, bindings } = historyStatement(tenantId, query);
  const { results } = await db
    .prepare(sql)
    .bind(...bindings)
    .all<{ result_json: string }>();
  const page = results.slice(0, query.limit).map((row) => summarise(readStoredResult(row.result_json)));
  const last = page.at(-1);
  const nextCursor = results.length > query.limit && last ? encodeCursor(last.createdAt, last.id) : null;
  return { executions: page, nextCursor };
}

/** Cursors are opaque to callers; a malformed one decodes to null. */
function decodeCursor(cursor: string): { createdAt: string; id: string } | null {
  try {
    const [createdAt, id] = atob(cursor.replaceAll("-", "+").replaceAll("_", "/")).split("|");
    if (!createdAt || !id) return null;
    return { createdAt, id };
  } catch {
    return null;
  }
}

function encodeCursor(createdAt: string, id: string): string {
  return btoa(`${createdAt}|${id}`).replaceAll("+", "-").replaceAll("/", "_").replaceAll("=", "");
}

function summarise(result: ExecutionResult): ExecutionSummary {
  const { output: _output, logs: _logs, tests: _tests, ...summary } = result;
  return summary;
}

export async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}
