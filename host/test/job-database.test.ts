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
import { bundleJobDatabase, startHost, type RunningHost } from "../main.ts";

/** Never ends on its own: only a kill stops it. */
const ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) AS n FROM c";
/** Ends, after a second or more here (6 million rows counted). */
const SLOW =
  "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 6000000) SELECT count(*) AS n FROM c";
const after = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

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
  const insertAs = (value: string, gone: AbortSignal) =>
    database.query(
      {
        mode: "batch",
        statements: [{ sql: "INSERT INTO kept (v) VALUES (?)", params: [value] }],
        deadline: inAMinute(),
      },
      gone,
    );

  beforeAll(async () => {
    database = await JobDatabaseProcess.start({ persistDir, script: await bundleJobDatabase() });
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
    let tookMs = 0;
    const [endless, behind] = await Promise.all([
      read(ENDLESS, deadline).then((answer) => ((tookMs = Date.now() - startedAt), answer)),
      // Sent while the endless one runs: it waits its turn, and runs once the process is back.
      after(100).then(() => read("SELECT count(*) AS n FROM kept")),
    ]);

    expect(endless).toMatchObject({
      ok: false,
      message: expect.stringContaining("past its job's deadline") as unknown,
    });
    expect(tookMs).toBeGreaterThanOrEqual(300 + KILL_GRACE_MS);
    expect(tookMs).toBeLessThan(300 + KILL_GRACE_MS + 3_000);
    expect(database.restarts).toBe(restartsBefore + 1);
    // What was committed before the kill is still there.
    expect(behind).toMatchObject({ ok: true, results: [{ results: [{ n: 2 }] }] });
  });

  it("answers a statement whose job's deadline passes while it waits, without running it or stopping the one that runs", async () => {
    const restartsBefore = database.restarts;
    const slow = read(SLOW);
    await after(50);
    const startedAt = Date.now();
    const queued = await database.query({
      mode: "batch",
      statements: [{ sql: "INSERT INTO kept (v) VALUES ('late')", params: [] }],
      deadline: Date.now() + 200,
    });
    expect(queued).toMatchObject({ ok: false, message: expect.stringContaining("deadline passed before") as unknown });
    expect(Date.now() - startedAt).toBeLessThan(1_000);
    expect(await slow).toMatchObject({ ok: true, results: [{ results: [{ n: 6_000_000 }] }] });
    expect(database.restarts).toBe(restartsBefore);
    expect(await read("SELECT count(*) AS n FROM kept WHERE v = 'late'")).toMatchObject({
      ok: true,
      results: [{ results: [{ n: 0 }] }],
    });
  });

  it("drops a waiting statement whose caller stopped waiting", async () => {
    const slow = read(SLOW);
    await after(50);
    const gone = new AbortController();
    const dropped = database.query(
      {
        mode: "batch",
        statements: [{ sql: "INSERT INTO kept (v) VALUES ('dropped')", params: [] }],
        deadline: inAMinute(),
      },
      gone.signal,
    );
    gone.abort();
    expect(await dropped).toMatchObject({ ok: false, message: "the caller stopped waiting" });
    await slow;
    expect(await read("SELECT count(*) AS n FROM kept WHERE v = 'dropped'")).toMatchObject({
      ok: true,
      results: [{ results: [{ n: 0 }] }],
    });
  });

  it("never sends a statement whose caller left before its turn, also when nothing else waits", async () => {
    const left = new AbortController();
    left.abort();
    expect(await insertAs("left-before", left.signal)).toMatchObject({
      ok: false,
      message: "the caller stopped waiting",
    });
    const leaving = new AbortController();
    const answer = insertAs("left-at-once", leaving.signal);
    leaving.abort();
    expect(await answer).toMatchObject({ ok: false, message: "the caller stopped waiting" });
    expect(await read("SELECT count(*) AS n FROM kept WHERE v LIKE 'left-%'")).toMatchObject({
      ok: true,
      results: [{ results: [{ n: 0 }] }],
    });
  });

  it("rolls back a batch the kill interrupted", async () => {
    const restartsBefore = database.restarts;
    const answer = await database.query({
      mode: "batch",
      statements: [
        { sql: "INSERT INTO kept (v) VALUES ('lost')", params: [] },
        { sql: ENDLESS, params: [] },
      ],
      deadline: Date.now() + 200,
    });
    expect(answer).toMatchObject({ ok: false, message: expect.stringContaining("past its job's deadline") as unknown });
    expect(database.restarts).toBe(restartsBefore + 1);
    expect(await read("SELECT count(*) AS n FROM kept WHERE v = 'lost'")).toMatchObject({
      ok: true,
      results: [{ results: [{ n: 0 }] }],
    });
  });
});

describe("POST /v1/job-db/query", () => {
  const token = "job-db-route-test-token";
  const stateRoot = mkdtempSync(join(tmpdir(), "cordon-job-db-route-"));
  let host: RunningHost;

  beforeAll(async () => {
    host = await startHost({
      port: 0,
      token,
      edgeRunners: 1,
      heapLimitMb: 128,
      jobDbPersistDir: join(stateRoot, "v3"),
    });
  });

  afterAll(async () => {
    await host.close();
    rmSync(stateRoot, { recursive: true, force: true });
  });

  // Its deadline is a minute from each request, not from when this file was collected.
  const post = (body: Record<string, unknown>, authorization = `Bearer ${token}`) =>
    fetch(`${host.url}/v1/job-db/query`, {
      method: "POST",
      headers: { authorization, "content-type": "application/json" },
      body: JSON.stringify({ deadline: Date.now() + 60_000, ...body }),
    });
  const query = { mode: "read", statements: [{ sql: "SELECT 1 AS one", params: [] }] };

  it("runs a statement for the dispatcher's token only", async () => {
    const answered = await post(query);
    expect(answered.status).toBe(200);
    expect(await answered.json()).toMatchObject({ ok: true, results: [{ results: [{ one: 1 }] }] });
    expect((await post(query, "Bearer not-the-token")).status).toBe(401);
  });

  it("refuses a malformed query with 400", async () => {
    for (const malformed of [
      { ...query, mode: "write" },
      { ...query, statements: [] },
      { ...query, statements: [{ sql: "SELECT ?", params: [{ nested: true }] }] },
      { ...query, deadline: "soon" },
      // A read is one statement.
      { ...query, statements: [...query.statements, ...query.statements] },
    ]) {
      expect((await post(malformed)).status, JSON.stringify(malformed)).toBe(400);
    }
  });
});
