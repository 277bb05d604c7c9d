/**
 * What the dispatcher and the local sandbox host say to each other about the jobs' database
 * (job-database.ts, host/job-database.ts): statements in, D1's results or its error message out.
 */
import { z } from "zod";

export type SqlValue = string | number | null;

export interface SqlStatement {
  sql: string;
  params: SqlValue[];
}

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
