/**
 * The execution log in D1: one row per accepted job, holding its final result.
 * The whole result is kept as JSON (parsed back through its schema on read); the columns beside it
 * exist for filtering and listing.
 */
import { ExecutionResult } from "../schemas";

export async function saveExecution(db: D1Database, result: ExecutionResult, codeSha256: string): Promise<void> {
  await db
    .prepare(
      `INSERT INTO executions (id, runtime, status, success, error_code, code_sha256, result_json, created_at, finished_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    )
    .bind(
      result.id,
      result.runtime,
      result.status,
      result.success ? 1 : 0,
      result.error?.code ?? null,
      codeSha256,
      JSON.stringify(result),
      result.createdAt,
      result.finishedAt,
    )
    .run();
}

export async function findExecution(db: D1Database, id: string): Promise<ExecutionResult | null> {
  const row = await db
    .prepare("SELECT result_json FROM executions WHERE id = ?")
    .bind(id)
    .first<{ result_json: string }>();
  if (!row) return null;
  return ExecutionResult.parse(JSON.parse(row.result_json));
}

export async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}
