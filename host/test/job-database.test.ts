/**
 * The jobs' database on the host (`npm run dev`): a real D1 in a workerd process of its own, stopped
 * and started again when a statement outlives its job.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JobDatabaseProcess, KILL_GRACE_MS } from "../job-database.ts";

/** Never ends on its own: only a kill stops it. */
const ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) AS n FROM c";

describe("the jobs' database process", () => {
  // Laid out as wrangler lays out its local state: `--persist-to <root>` keeps D1 under <root>/v3.
  const stateRoot = mkdtempSync(join(tmpdir(), "cordon-job-db-test-"));
  const persistDir = join(stateRoot, "v3");
  let database: JobDatabaseProcess;
  const inAMinute = () => Date.now() + 60_000;
  const batch = (sql: string, params: (string | number | null)[] = []) =>
    database.query({ mode: "batch", statements: [{ sql, params }], deadline: inAMinute() });
  const read = (sql: string, deadline = inAMinute()) =>
    database.query({ mode: "read", statements: [{ sql, params: [] }], deadline });

  beforeAll(async () => {
    database = await JobDatabaseProcess.start(persistDir);
  });

  afterAll(async () => {
    await database.close();
    rmSync(stateRoot, { recursive: true, force: true });
  });

  it("runs statements in D1 and answers its results, its size and its errors", async () => {
    expect(await batch("CREATE TABLE kept (v TEXT)")).toMatchObject({ ok: true });
    const written = await database.query({
      mode: "batch",
      statements: [
        { sql: "SELECT 1", params: [] },
        { sql: "INSERT INTO kept (v) VALUES (?), (?)", params: ["a", null] },
      ],
      deadline: inAMinute(),
    });
    expect(written).toMatchObject({ ok: true, results: [{}, { meta: { changes: 2 } }] });
    expect(written.ok && written.results[1]?.meta.size_after).toBeGreaterThan(0);
    expect(await read("SELECT v FROM kept ORDER BY v")).toEqual({
      ok: true,
      results: [{ results: [{ v: null }, { v: "a" }], meta: expect.objectContaining({ changes: 0 }) as unknown }],
    });
    const failed = await read("SELECT * FROM missing");
    expect(failed).toMatchObject({ ok: false, message: expect.stringContaining("no such table: missing") as unknown });
  });

  it("keeps its files where wrangler keeps JOB_DB's: what one writes, the other reads", async () => {
    const wrangler = fileURLToPath(new URL("../../node_modules/wrangler/bin/wrangler.js", import.meta.url));
    const execute = spawnSync(
      process.execPath,
      [
        wrangler,
        "d1",
        "execute",
        "JOB_DB",
        "--local",
        "--persist-to",
        stateRoot,
        "--json",
        "--command",
        "SELECT count(*) AS n FROM kept; CREATE TABLE from_wrangler (v); INSERT INTO from_wrangler VALUES (7)",
      ],
      { cwd: fileURLToPath(new URL("../..", import.meta.url)), encoding: "utf8", env: { ...process.env, CI: "1" } },
    );
    expect(execute.status, execute.stderr).toBe(0);
    expect(JSON.parse(execute.stdout)).toContainEqual(expect.objectContaining({ results: [{ n: 2 }] }));
    expect(await read("SELECT v FROM from_wrangler")).toMatchObject({ ok: true, results: [{ results: [{ v: 7 }] }] });
  });

  it("stops a statement that outlives its job's deadline, and serves on the same data after", async () => {
    const restartsBefore = database.restarts;
    const startedAt = Date.now();
    const deadline = startedAt + 300;
    const [endless, beside] = await Promise.all([
      read(ENDLESS, deadline),
      // Sent while the endless one runs: it waits behind it in the same database, and ends with it.
      new Promise((resolve) => setTimeout(resolve, 100)).then(() => read("SELECT count(*) AS n FROM kept")),
    ]);
    const tookMs = Date.now() - startedAt;

    expect(endless).toMatchObject({
      ok: false,
      message: expect.stringContaining("past its job's deadline") as unknown,
    });
    expect(tookMs).toBeGreaterThanOrEqual(300 + KILL_GRACE_MS);
    expect(tookMs).toBeLessThan(300 + KILL_GRACE_MS + 5_000);
    expect(beside).toMatchObject({ ok: false, message: expect.stringContaining("restarted") as unknown });
    expect(database.restarts).toBe(restartsBefore + 1);
    // What was committed before the kill is still there; the process answers again.
    expect(await read("SELECT count(*) AS n FROM kept")).toMatchObject({
      ok: true,
      results: [{ results: [{ n: 2 }] }],
    });
  });

  it("rolls back a batch the kill interrupted", async () => {
    const answer = await database.query({
      mode: "batch",
      statements: [
        { sql: "INSERT INTO kept (v) VALUES ('lost')", params: [] },
        { sql: ENDLESS, params: [] },
      ],
      deadline: Date.now() + 200,
    });
    expect(answer).toMatchObject({ ok: false });
    expect(await read("SELECT count(*) AS n FROM kept WHERE v = 'lost'")).toMatchObject({
      ok: true,
      results: [{ results: [{ n: 0 }] }],
    });
  });
});
