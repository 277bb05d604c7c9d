/**
 * What the dispatcher and the local sandbox host say to each other about the jobs' database
 * (job-database.ts, host/job-database.ts): statements in, D1's results or its error message out.
 */
import { z } from "zod";

const SqlValue = z.union([z.string(), z.number(), z.null()]);
export type SqlValue = z.infer<typeof SqlValue>;

export const SqlStatement = z.object({ sql: z.string(), params: z.array(SqlValue) });
export type SqlStatement = z.infer<typeof SqlStatement>;

/** What the dispatcher sends: a read is one statement, a batch one or more; `deadline` is the job's (epoch ms). */
export const JobDatabaseQuery = z.discriminatedUnion("mode", [
  z.object({ mode: z.literal("read"), statements: z.array(SqlStatement).length(1), deadline: z.number() }),
  z.object({ mode: z.literal("batch"), statements: z.array(SqlStatement).min(1), deadline: z.number() }),
]);
export type JobDatabaseQuery = z.infer<typeof JobDatabaseQuery>;

/** The part of a D1 result the DB binding reads. */
export interface StatementResult {
  results: Record<string, unknown>[];
  meta: { changes: number; size_after: number };
}

/** What the host answers; a statement's error carries D1's own message. */
export const JobDatabaseAnswer = z.discriminatedUnion("ok", [
  z.object({
    ok: z.literal(true),
    results: z.array(
      z.object({
        results: z.array(z.record(z.string(), z.unknown())),
        meta: z.object({ changes: z.number(), size_after: z.number() }),
      }),
    ),
  }),
  z.object({ ok: z.literal(false), message: z.string() }),
]);
export type JobDatabaseAnswer = z.infer<typeof JobDatabaseAnswer>;
