/**
 * Where the DB binding's statements run: the jobs' D1 database (JOB_DB), either through the binding
 * (production, tests) or through the local sandbox host (`npm run dev`, CORDON_JOB_DB_URL set).
 *
 * Why the host: local workerd runs D1 on the dispatcher's own thread and has no time limit for a
 * statement, so one slow statement a job's SQL policy lets through (a join of its own large tables)
 * stopped the whole dispatcher until it ended. On the host the database runs in a workerd process of
 * its own, which the host kills and restarts when a statement outlives the job that sent it
 * (host/job-database.ts). Production D1 bounds a statement at 30 s itself.
 */
import { JobDatabaseAnswer, type SqlStatement, type StatementResult } from "./job-database-protocol";

export type { SqlStatement, StatementResult };

export interface JobDatabase {
  /** One statement that only reads. */
  read(statement: SqlStatement): Promise<StatementResult>;
  /** The statements as one batch: one transaction that runs alone in the database. */
  batch(statements: readonly SqlStatement[]): Promise<StatementResult[]>;
}

/** The jobs' database of this environment, for a job whose time is up at `deadline` (epoch ms). */
export function jobDatabaseFor(env: Env, deadline: number): JobDatabase {
  if (env.CORDON_JOB_DB_URL) return hostJobDatabase(env.CORDON_JOB_DB_URL, env.CORDON_HOST_TOKEN, deadline);
  return d1JobDatabase(env.JOB_DB);
}

export function d1JobDatabase(db: D1Database): JobDatabase {
  const prepare = ({ sql, params }: SqlStatement) => db.prepare(sql).bind(...params);
  return {
    async read(statement) {
      return resultOf(await prepare(statement).all<Record<string, unknown>>());
    },
    async batch(statements) {
      const results = await db.batch<Record<string, unknown>>(statements.map(prepare));
      return results.map(resultOf);
    },
  };
}

function resultOf(result: D1Result<Record<string, unknown>>): StatementResult {
  return { results: result.results, meta: { changes: result.meta.changes ?? 0, size_after: result.meta.size_after } };
}

/** Past the job's deadline and the host's kill grace, the host itself is presumed stuck. */
const HOST_ANSWER_MARGIN_MS = 4_000;

/**
 * The jobs' database on the local sandbox host (POST /v1/job-db/query). A statement still running at
 * `deadline` plus the host's grace is stopped there with the process that runs it.
 */
export function hostJobDatabase(baseUrl: string, token: string, deadline: number): JobDatabase {
  const query = async (mode: "read" | "batch", statements: readonly SqlStatement[]): Promise<StatementResult[]> => {
    const response = await fetch(new URL("/v1/job-db/query", baseUrl), {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ mode, statements, deadline }),
      signal: AbortSignal.timeout(Math.max(1, deadline - Date.now()) + HOST_ANSWER_MARGIN_MS),
    });
    if (!response.ok) throw new Error(`the local job database answered ${response.status}`);
    const answer = JobDatabaseAnswer.parse(await response.json());
    if (!answer.ok) throw new Error(answer.message);
    return answer.results;
  };
  return {
    async read(statement) {
      const [result] = await query("read", [statement]);
      if (!result) throw new Error("the local job database answered no result");
      return result;
    },
    batch: (statements) => query("batch", statements),
  };
}
