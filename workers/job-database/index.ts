/**
 * The Worker of the local sandbox host's job-database process (host/job-database.ts): runs the DB
 * binding's statements in JOB_DB and answers D1's results, or D1's error message. Only the host may
 * call it (a random token per process); the host has already checked the shape of what it sends.
 */
import type { JobDatabaseAnswer, JobDatabaseQuery } from "../../src/bindings/job-database-protocol";

interface JobDatabaseEnv {
  TOKEN: string;
  JOB_DB: D1Database;
}

export default {
  async fetch(request, env): Promise<Response> {
    if (!authorised(request.headers.get("authorization") ?? "", `Bearer ${env.TOKEN}`)) {
      return new Response("unauthorized", { status: 401 });
    }
    const { mode, statements } = await request.json<Omit<JobDatabaseQuery, "deadline">>();
    let answer: JobDatabaseAnswer;
    try {
      const prepared = statements.map(({ sql, params }) => env.JOB_DB.prepare(sql).bind(...params));
      const [first] = prepared;
      // The host sends a read as exactly one statement.
      const results =
        mode === "read" && first ? [await first.all<Record<string, unknown>>()] : await env.JOB_DB.batch(prepared);
      answer = {
        ok: true,
        results: results.map((result) => ({
          results: result.results as Record<string, unknown>[],
          meta: { changes: result.meta.changes ?? 0, size_after: result.meta.size_after ?? 0 },
        })),
      };
    } catch (error) {
      answer = { ok: false, message: error instanceof Error ? error.message : String(error) };
    }
    return Response.json(answer);
  },
} satisfies ExportedHandler<JobDatabaseEnv>;

function authorised(given: string, expected: string): boolean {
  const encoder = new TextEncoder();
  const a = encoder.encode(given);
  const b = encoder.encode(expected);
  return a.byteLength === b.byteLength && crypto.subtle.timingSafeEqual(a, b);
}
