/**
 * The jobs' database on the local sandbox host, as `npm run dev` runs it (CORDON_JOB_DB_URL set): a
 * statement the SQL policy lets through but that would run for minutes (a join of the tenant's own
 * tables) no longer holds the dispatcher, and is stopped after its job's deadline.
 */
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { hostJobDatabase } from "../../src/bindings/job-database";
import { tenantKvPrefix } from "../../src/bindings/kv";
import { prepareEdgeJob } from "../../src/edge/prepare";
import { newId } from "../../src/ids";
import { runOnItsHome } from "../../src/jobs/homes";
import { ExecutionRequest, type ExecutionResult } from "../../src/schemas";
import { createTenant, sessionOf } from "../helpers";

/** 2 000 rows joined three ways: 8·10⁹ rows to count, minutes of work for SQLite. */
const FILL = [
  "CREATE TABLE IF NOT EXISTS big (x)",
  "INSERT INTO big (x) WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 2000) SELECT x FROM c",
];
const ENDLESS_JOIN = "SELECT count(*) AS n FROM big a, big b, big c";

const hostEnv: Env = { ...env, CORDON_JOB_DB_URL: env.CORDON_HOST_URL };

async function runJob(tenantId: string, code: string, timeout: number): Promise<ExecutionResult> {
  const job = ExecutionRequest.parse({ runtime: "edge", code, timeout, trustLevel: "high" });
  const acceptedAt = Date.now();
  const prepared = prepareEdgeJob(job, { executionId: newId("exec"), trustLevel: "high", acceptedAt });
  return runOnItsHome(
    { env: hostEnv, exports, waitUntil: () => undefined },
    { job, prepared, tenantId, acceptedAt, codeSha256: "0".repeat(64), storageLimitMb: 100 },
  );
}

describe("the jobs' database on the local sandbox host", () => {
  it("keeps the dispatcher serving while a job's statement runs, and stops the statement after the job's deadline", async () => {
    const tenant = await createTenant();
    const result = runJob(
      tenant.id,
      `export default async function (input, ctx) {
        for (const sql of ${JSON.stringify(FILL)}) await ctx.env.DB.query(sql);
        await ctx.env.KV.put("joining", "1");
        return ctx.env.DB.query(${JSON.stringify(ENDLESS_JOIN)});
      }`,
      4_000,
    );
    // Once the join has been sent, the dispatcher still answers: before, local D1 ran it on this thread.
    const marker = `${tenantKvPrefix(tenant.id)}joining`;
    let ended = false;
    void result.finally(() => (ended = true));
    while (!ended && (await env.JOB_KV.get(marker)) === null) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(ended, "the job ended before it sent its join").toBe(false);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const health = exports.default
      .fetch(new Request("https://cordon.test/healthz"))
      .then((response) => response.status);
    expect(await Promise.race([health, result.then(() => "the job ended first")])).toBe(200);

    const outcome = await result;
    expect(outcome.error?.code).toBe("SANDBOX_TIMEOUT");
    // The database came back on the same files: the tenant's rows are there for its next job.
    const next = await runJob(
      tenant.id,
      `export default async function (input, ctx) { return ctx.env.DB.query("SELECT count(*) AS n FROM big"); }`,
      5_000,
    );
    expect(next.output).toMatchObject({ rows: [{ n: 2_000 }] });
  });

  it("answers a statement's own error with D1's message and the job's names", async () => {
    const tenant = await createTenant();
    const session = sessionOf(tenant.id, {
      db: hostJobDatabase(env.CORDON_HOST_URL, env.CORDON_HOST_TOKEN, Date.now() + 10_000),
    });
    const answer = await session.call(
      JSON.stringify({ binding: "DB", method: "query", sql: "SELECT * FROM nowhere", params: [] }),
    );
    expect(answer).toMatchObject({
      ok: false,
      error: { code: "SANDBOX_RUNTIME_ERROR", message: expect.stringContaining("no such table: nowhere") as unknown },
    });
  });
});
