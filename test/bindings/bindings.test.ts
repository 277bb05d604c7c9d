/**
 * The DB and KV bindings of edge jobs, end to end through the dispatcher (local home: calls relayed by
 * the sandbox host), and through the production home (the dispatcher's own Worker Loader and its
 * JobBindings entrypoint). Two tenants; tenant B's data must be unreachable from tenant A's jobs.
 */
import { env, exports } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import { d1JobDatabase } from "../../src/bindings/job-database";
import { BindingSession } from "../../src/bindings/session";
import { BYTES_PER_MB, StorageQuota } from "../../src/bindings/storage-quota";
import { prepareEdgeJob } from "../../src/edge/prepare";
import { loaderRunner } from "../../src/edge/runner";
import { ExecutionRequest } from "../../src/schemas";
import { ledgerOf } from "../../src/service/admission";
import { admin, createTenant, sessionOf, storageOf, type TestTenant } from "../helpers";

let alice: TestTenant;
let bob: TestTenant;

/** A job body that runs `statements` in order, catching each, and returns what each gave. */
function probe(statements: string[]): string {
  return `export default async (_input, { env }) => {
    const out = [];
    for (const sql of ${JSON.stringify(statements)}) {
      try { out.push({ ok: await env.DB.query(sql) }); }
      catch (error) { out.push({ error: error.code ?? error.name, rule: error.rule ?? null, message: error.message }); }
    }
    return out;
  }`;
}

beforeAll(async () => {
  alice = await createTenant({ name: "alice", maxTrustLevel: "high" });
  bob = await createTenant({ name: "bob", maxTrustLevel: "high" });
  const seeded = await bob.execute({
    code: `export default async (_input, { env }) => {
      await env.DB.query("CREATE TABLE secrets (id INTEGER PRIMARY KEY, value TEXT)");
      await env.DB.query("INSERT INTO secrets (value) VALUES (?)", ["bob-secret-row"]);
      await env.KV.put("plans", "bob-secret-kv");
      return (await env.DB.query("SELECT value FROM secrets")).rows;
    }`,
  });
  expect(seeded.body.output).toEqual([{ value: "bob-secret-row" }]);
});

describe("DB binding", () => {
  it("creates, writes and reads the tenant's own tables with bound parameters", async () => {
    const { status, body } = await alice.execute({
      code: `export default async (input, { env }) => {
        await env.DB.query("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, age INTEGER)");
        for (const [name, age] of input) await env.DB.query("INSERT INTO users (name, age) VALUES (?, ?)", [name, age]);
        await env.DB.query("UPDATE users SET age = age + 1 WHERE name = ?", ["ada"]);
        return await env.DB.query("SELECT name, age FROM users WHERE age > ? ORDER BY name", [30]);
      }`,
      input: [
        ["ada", 36],
        ["bob", 25],
        ["cy", 41],
      ],
    });
    expect(status).toBe(200);
    expect(body.output).toMatchObject({
      rows: [
        { name: "ada", age: 37 },
        { name: "cy", age: 41 },
      ],
      rowCount: 2,
    });
    expect(body.metrics).toMatchObject({ dbQueries: 6, dbRejected: 0, bindingCalls: { db: 6, kv: 0 } });
  });

  it("stops a large query at the row cap inside SQLite, and keeps the job's own LIMIT", async () => {
    const { body } = await alice.execute({
      code: `export default async (_input, { env }) => {
        // 1 000 000 rows from a 100-row CTE joined three ways: SQLite stops at the cap.
        const joined = await env.DB.query(
          "WITH a(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM a LIMIT 100) SELECT a.x, b.x, c.x FROM a, a AS b, a AS c");
        const limited = await env.DB.query("WITH a(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM a LIMIT 100) SELECT x FROM a LIMIT ?", [3]);
        return { joined: [joined.rowCount, joined.truncated], limited: limited.rows.map((row) => row.x) };
      }`,
    });
    expect(body.output).toEqual({ joined: [1000, true], limited: [1, 2, 3] });
  });

  it("refuses a join of bounded CTEs whose rows multiply past the limit, before D1 runs it", async () => {
    // 8·10⁹ rows: run, this would hold the local runtime (and D1) for minutes.
    const { body } = await alice.execute({
      trustLevel: "low",
      code: probe([
        "WITH c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 2000) SELECT count(*) AS n FROM c, c AS d, c AS e",
        "WITH c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 2000) SELECT count(*) AS n FROM c, c AS d",
      ]),
    });
    expect(body.output).toMatchObject([{ rule: "join_too_large" }, { ok: { rows: [{ n: 4_000_000 }] } }]);
    // json_each of bound values counts by their length: two small arrays join.
    const joined = await alice.execute({
      trustLevel: "low",
      code: `export default async (_input, { env }) => (await env.DB.query(
        "SELECT count(*) AS n FROM json_each(?1) a JOIN json_each(?2) b ON a.value = b.value", ["[1,2,3]", "[2,3,4]"])).rows`,
    });
    expect(joined.body.output).toEqual([{ n: 2 }]);
  });

  it("keeps tenants' tables in their own database, apart from the platform's (JOB_DB, not DB)", async () => {
    const tables = async (db: D1Database) =>
      (await db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all<{ name: string }>()).results.map(
        (row) => row.name,
      );
    expect(await tables(env.JOB_DB)).toContainEqual(expect.stringMatching(/^t_[a-z0-9]+__secrets$/));
    const platform = await tables(env.DB);
    expect(platform).toContain("executions");
    expect(platform.filter((name) => name.startsWith("t_"))).toEqual([]);
  });

  it("fails the job with SANDBOX_SECURITY_VIOLATION when a refused statement is not caught", async () => {
    const { status, body } = await alice.execute({
      code: "export default async (_input, { env }) => env.DB.query('SELECT * FROM users; DROP TABLE users')",
    });
    expect(status).toBe(403);
    expect(body.error).toMatchObject({ code: "SANDBOX_SECURITY_VIOLATION", rule: "multiple_statements" });
    expect(body.metrics).toMatchObject({ dbQueries: 1, dbRejected: 1 });
  });

  it("allows only the statement kinds of the trust level", async () => {
    const low = await alice.execute({
      code: probe(["SELECT count(*) AS n FROM users", "INSERT INTO users (name) VALUES ('x')", "CREATE TABLE t (a)"]),
      trustLevel: "low",
    });
    const results = low.body.output as { ok?: unknown; rule?: string }[];
    expect(results[0]?.ok).toMatchObject({ rows: [{ n: 3 }] });
    expect(results[1]?.rule).toBe("statement_kind_not_allowed");
    expect(results[2]?.rule).toBe("statement_kind_not_allowed");

    const medium = await alice.execute({
      code: probe(["INSERT INTO users (name) VALUES ('m')", "DROP TABLE users"]),
      trustLevel: "medium",
    });
    const mediumResults = medium.body.output as { ok?: unknown; rule?: string }[];
    expect(mediumResults[0]?.ok).toBeDefined();
    expect(mediumResults[1]?.rule).toBe("statement_kind_not_allowed");
  });

  it("gives untrusted jobs no bindings at all", async () => {
    const { body } = await alice.execute({
      code: "export default async (_input, ctx) => Object.keys(ctx.env)",
      trustLevel: "untrusted",
    });
    expect(body.output).toEqual([]);
  });

  it("keeps tenant B's tables unreachable, unnamable and undetectable from tenant A", async () => {
    const bobKey = bob.id.replace(/^ten_/, "");
    const { body } = await alice.execute({
      code: probe([
        "SELECT * FROM secrets",
        `SELECT * FROM t_${bobKey}__secrets`,
        `SELECT * FROM "t_${bobKey}__secrets"`,
        `SELECT value FROM users UNION SELECT value FROM t_${bobKey}__secrets`,
        "SELECT name FROM sqlite_master",
        "SELECT name FROM sqlite_schema WHERE name LIKE '%secrets%'",
        "SELECT * FROM pragma_table_list",
        "PRAGMA table_list",
        `ATTACH DATABASE 'x' AS other`,
        `SELECT count(*) FROM main.t_${bobKey}__secrets`,
        "SELECT load_extension('x')",
        `WITH s AS (SELECT * FROM t_${bobKey}__secrets) SELECT * FROM s`,
        `INSERT INTO users (name) SELECT value FROM t_${bobKey}__secrets`,
      ]),
    });
    expect(JSON.stringify(body.output)).not.toContain("bob-secret-row");
    const results = body.output as { ok?: unknown; error?: string }[];
    // The job's own namespace has no "secrets" table: an error, not bob's rows.
    expect(results[0]?.error).toBe("SANDBOX_RUNTIME_ERROR");
    expect(results.slice(1).every((result) => result.error === "SANDBOX_SECURITY_VIOLATION")).toBe(true);
  });

  it("answers a probe of tenant B's real table exactly like a probe of a table that exists nowhere", async () => {
    const bobKey = bob.id.replace(/^ten_/, "");
    const ghostKey = "0".repeat(32);
    const statements = (key: string) => [
      `SELECT count(*) FROM t_${key}__secrets`,
      `SELECT * FROM "t_${key}__secrets" LIMIT 1`,
    ];
    const real = await alice.execute({ code: probe(statements(bobKey)) });
    const ghost = await alice.execute({ code: probe(statements(ghostKey)) });
    expect(JSON.stringify(real.body.output).replaceAll(bobKey, "KEY")).toBe(
      JSON.stringify(ghost.body.output).replaceAll(ghostKey, "KEY"),
    );
  });

  it("refuses writes past the tenant's storage limit, lets DELETE make room, and leaves other tenants alone", async () => {
    const small = await createTenant({ name: "small", maxTrustLevel: "high", storageLimitMb: 1 });
    // 200 KB rows until refused; then the table is emptied and a row fits again.
    const fill = `export default async (_input, { env }) => {
      const row = "x".repeat(200_000);
      const answers = [];
      await env.DB.query("CREATE TABLE IF NOT EXISTS blobs (v TEXT)");
      for (let i = 0; i < 8; i++) {
        try { await env.DB.query("INSERT INTO blobs (v) VALUES (?)", [row]); answers.push("ok"); }
        catch (error) { answers.push(error.rule); }
      }
      return answers;
    }`;
    const filled = await small.execute({ code: fill });
    const answers = filled.body.output as string[];
    // 1 MiB holds 5 such rows (and the table's own pages); the write that reaches it is the last.
    expect(answers.slice(0, 5)).toEqual(["ok", "ok", "ok", "ok", "ok"]);
    expect(answers.at(-1)).toBe("storage_quota");
    expect(answers.filter((answer) => answer === "ok").length).toBeLessThanOrEqual(6);
    const used = async () => (await ledgerOf(env, small.id).storageUse()).dbBytes;
    expect(await used()).toBeGreaterThanOrEqual(BYTES_PER_MB);

    const emptied = await small.execute({
      code: `export default async (_input, { env }) => {
        await env.DB.query("DELETE FROM blobs");
        await env.DB.query("INSERT INTO blobs (v) VALUES (?)", ["x".repeat(200_000)]);
        return (await env.DB.query("SELECT count(*) AS n FROM blobs")).rows[0].n;
      }`,
    });
    expect(emptied.body.output).toBe(1);
    expect(await used()).toBeLessThan(300_000);
    const shown = await admin("GET", `/tenants/${small.id}`);
    expect(shown.body).toMatchObject({
      tenant: { storageLimitMb: 1 },
      storage: { limitBytes: BYTES_PER_MB, usedBytes: await used(), dbBytes: await used(), kvBytes: 0 },
    });
    // Writes at once, from three jobs of four calls each, all see each other's reservations: the
    // tenant passes its limit by at most one write.
    await small.execute({
      code: `export default async (_input, { env }) => { await env.DB.query("DELETE FROM blobs") }`,
    });
    const parallel = `export default async (_input, { env }) => Promise.all(Array.from({ length: 8 }, () =>
      env.DB.query("INSERT INTO blobs (v) VALUES (?)", ["x".repeat(200_000)]).then(() => "ok", (error) => error.rule)))`;
    const runs = await Promise.all([1, 2, 3].map(() => small.execute({ code: parallel })));
    const written = runs.flatMap((run) => run.body.output as string[]).filter((answer) => answer === "ok").length;
    expect(written).toBeLessThanOrEqual(6);
    expect(await used()).toBeLessThan(BYTES_PER_MB + 2 * 210_000);
    // Another tenant's writes are not counted against this one, nor refused by it.
    const other = await alice.execute({ code: fill });
    expect(other.body.output).toEqual(Array(8).fill("ok"));
  });

  it("enforces the per-job binding call quota", async () => {
    const { body } = await alice.execute({
      code: probe(["SELECT 1", "SELECT 2", "SELECT 3"]),
      limits: { bindingCalls: 2 },
    });
    const results = body.output as { ok?: unknown; rule?: string }[];
    expect(results.map((result) => (result.ok ? "ok" : result.rule))).toEqual(["ok", "ok", "binding_call_quota"]);
  });
});

describe("KV binding", () => {
  it("keeps the storage account true when a KV call fails, and runs one write per key at a time", async () => {
    const tenant = await createTenant({ name: "kv-account", maxTrustLevel: "high" });
    const kvBytes = async () => (await ledgerOf(env, tenant.id).storageUse()).kvBytes;
    // The real KV namespace, but a put of "fails" throws (as KV's 429 for a second write within a second)
    // and a put of "slow" is held until released.
    let release = () => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    const kv = new Proxy(env.JOB_KV, {
      get(target, name) {
        if (name !== "put") return Reflect.get(target, name).bind(target);
        return async (key: string, value: string) => {
          if (value === "fails") throw new Error("KV PUT failed: 429 Too Many Requests");
          if (value === "slow") await held;
          return target.put(key, value);
        };
      },
    });
    const session = sessionOf(tenant.id, { kv });
    const kvCall = (method: string, key: string, value?: string) =>
      session.call(JSON.stringify({ binding: "KV", method, key, ...(value === undefined ? {} : { value }) }));

    expect(await kvCall("put", "k", "x".repeat(100_000))).toMatchObject({ ok: true });
    expect(await kvBytes()).toBe(1 + 100_000);
    // A smaller value that never reached KV: KV still holds the big one, and so does the account.
    expect(await kvCall("put", "k", "fails")).toMatchObject({ ok: false });
    expect(await kvBytes()).toBe(1 + 100_000);

    // While a put of the key is under way, another write of it is refused; the account counts the
    // larger size meanwhile, and the new one once it has landed.
    const slow = kvCall("put", "k", "slow");
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await kvCall("delete", "k")).toMatchObject({ ok: false, error: { rule: "key_busy" } });
    expect(await kvCall("put", "k", "y")).toMatchObject({ ok: false, error: { rule: "key_busy" } });
    expect(await kvBytes()).toBe(1 + 100_000);
    release();
    expect(await slow).toMatchObject({ ok: true });
    expect(await kvBytes()).toBe(1 + "slow".length);
    expect(await kvCall("delete", "k")).toMatchObject({ ok: true });
    expect(await kvBytes()).toBe(0);
  });

  it("answers a write that landed as done, also when its ledger cannot be told how it ended", async () => {
    const tenant = await createTenant({ name: "ledger-down", maxTrustLevel: "high" });
    const real = ledgerOf(env, tenant.id);
    const unreachable = () => Promise.reject(new Error("Durable Object reset"));
    const storage = new StorageQuota(BYTES_PER_MB, () => ({
      reserveStorage: (bytes, limit) => real.reserveStorage(bytes, limit),
      beginKvWrite: (key, bytes, expiresAt, limit) => real.beginKvWrite(key, bytes, expiresAt, limit),
      settleStorage: unreachable,
      endKvWrite: unreachable,
    }));
    const session = sessionOf(tenant.id, { storage });
    const query = (sql: string) => session.call(JSON.stringify({ binding: "DB", method: "query", sql, params: [] }));
    expect(await query("CREATE TABLE landed (v TEXT)")).toMatchObject({ ok: true });
    expect(await query("INSERT INTO landed (v) VALUES ('once')")).toMatchObject({ ok: true });
    expect(await session.call(JSON.stringify({ binding: "KV", method: "put", key: "k", value: "v" }))).toMatchObject({
      ok: true,
    });
    expect(await query("SELECT count(*) AS n FROM landed")).toMatchObject({ ok: true, value: { rows: [{ n: 1 }] } });
  });

  it("counts entries against the tenant's storage limit: replaced, deleted and expired ones give their bytes back", async () => {
    const small = await createTenant({ name: "small-kv", maxTrustLevel: "high", storageLimitMb: 1 });
    const kvBytes = async () => (await ledgerOf(env, small.id).storageUse()).kvBytes;
    // 100 KiB values until refused. An entry costs its key and value; a put is refused once the total
    // has reached 1 MiB: after ten entries (1 024 020 bytes) there is room, after eleven there is not.
    const filled = await small.execute({
      code: `export default async (_input, { env }) => {
        const answers = [];
        for (let i = 0; i < 13; i++) {
          try { await env.KV.put("k" + i, "x".repeat(102_400)); answers.push("ok"); }
          catch (error) { answers.push(error.rule); }
        }
        return answers;
      }`,
    });
    expect(filled.body.output).toEqual([...Array(11).fill("ok"), "storage_quota", "storage_quota"]);
    const entry = (key: string, valueBytes: number) => key.length + valueBytes;
    const big = (from: number, to: number) =>
      Array.from({ length: to - from }, (_, i) => entry(`k${from + i}`, 102_400)).reduce((a, b) => a + b, 0);
    expect(await kvBytes()).toBe(big(0, 11));

    const made = await small.execute({
      code: `export default async (_input, { env }) => {
        for (let i = 0; i < 5; i++) await env.KV.delete("k" + i);
        await env.KV.put("k5", "small");
        await env.KV.put("brief", "x".repeat(1000), { expirationTtl: 60 });
        return (await env.KV.list()).keys.length;
      }`,
    });
    expect(made.body.output).toBe(7);
    expect(await kvBytes()).toBe(big(6, 11) + entry("k5", 5) + entry("brief", 1000));
    // An expired entry stops counting when the account is next read.
    await runInDurableObject(ledgerOf(env, small.id) as never, (_ledger, state) => {
      state.storage.sql.exec("UPDATE kv_entries SET expires_at = 1 WHERE key = 'brief'");
    });
    expect(await kvBytes()).toBe(big(6, 11) + entry("k5", 5));
  });

  it("round-trips values and lists with pagination, confined to the tenant", async () => {
    const { status, body } = await alice.execute({
      code: `export default async (_input, { env }) => {
        for (let i = 0; i < 5; i++) await env.KV.put("item/" + i, "v" + i);
        await env.KV.put("tmp", "gone", { expirationTtl: 120 });
        await env.KV.delete("tmp");
        const first = await env.KV.list({ prefix: "item/", limit: 3 });
        const second = await env.KV.list({ prefix: "item/", cursor: first.cursor, limit: 3 });
        return {
          value: await env.KV.get("item/3"),
          deleted: await env.KV.get("tmp"),
          bobs: await env.KV.get("plans"),
          pages: [first.keys.map((k) => k.name), second.keys.map((k) => k.name), second.complete],
        };
      }`,
    });
    expect(status).toBe(200);
    expect(body.output).toEqual({
      value: "v3",
      deleted: null,
      bobs: null,
      pages: [["item/0", "item/1", "item/2"], ["item/3", "item/4"], true],
    });
    expect(body.metrics).toMatchObject({ kvWrites: 7, kvReads: 5, bindingCalls: { db: 0, kv: 12 } });
  });

  it("refuses hostile keys, short TTLs and oversized values with a reason", async () => {
    const { body } = await alice.execute({
      code: `export default async (_input, { env }) => {
        const attempts = [
          () => env.KV.get("../plans"),
          () => env.KV.get("a/../../t/${"x"}/plans"),
          () => env.KV.get("/plans"),
          () => env.KV.get("line\\nbreak"),
          () => env.KV.get("nul\\u0000"),
          () => env.KV.get(""),
          () => env.KV.put("k".repeat(449), "v"),
          () => env.KV.list({ prefix: "p".repeat(2000) }),
          () => env.KV.put("k", "v", { expirationTtl: 10 }),
          () => env.KV.put("k", "v", { expirationTtl: 1e15 }),
          () => env.KV.put("k", "x".repeat(200 * 1024)),
          () => env.KV.put("k", { not: "a string" }),
        ];
        const out = [];
        for (const attempt of attempts) {
          try { await attempt(); out.push("allowed"); } catch (error) { out.push(error.rule ?? error.name); }
        }
        return out;
      }`,
    });
    expect(body.output).toEqual([
      "invalid_key",
      "invalid_key",
      "invalid_key",
      "invalid_key",
      "invalid_key",
      "invalid_key",
      "invalid_key",
      "invalid_key",
      "invalid_ttl",
      "invalid_ttl",
      "value_too_large",
      "malformed_call",
    ]);
  });

  it("stores a key of the longest length it allows", async () => {
    const { body } = await alice.execute({
      code: `export default async (_input, { env }) => {
        const key = "k".repeat(448);
        await env.KV.put(key, "longest", { expirationTtl: 10 * 365 * 24 * 3600 });
        return env.KV.get(key);
      }`,
    });
    expect(body.output).toBe("longest");
  });

  it("cannot reach another tenant's keys through its prefix", async () => {
    const { body } = await alice.execute({
      code: `export default async (_input, { env }) => [await env.KV.get("t/${bob.id}/plans"), (await env.KV.list()).keys.map((k) => k.name).filter((n) => n.includes("plans"))]`,
    });
    expect(body.output).toEqual([null, []]);
  });
});

describe("production home: the dispatcher's own Worker Loader and JobBindings entrypoint", () => {
  it("runs DB and KV calls through ctx.exports with the same session rules", async () => {
    const job = ExecutionRequest.parse({
      runtime: "edge",
      code: `export default async (_input, { env }) => {
        await env.KV.put("home", "production");
        let refused = null;
        try { await env.DB.query("PRAGMA table_list"); } catch (error) { refused = error.rule; }
        await env.DB.query("CREATE TABLE IF NOT EXISTS homes (n INTEGER)");
        await env.DB.query("INSERT INTO homes (n) VALUES (?)", [40]);
        const db = (await env.DB.query("SELECT n + ? AS n FROM homes", [2])).rows[0].n;
        return { kv: await env.KV.get("home"), db, refused };
      }`,
    });
    const prepared = prepareEdgeJob(job, {
      executionId: "exec_production_home",
      trustLevel: "high",
      acceptedAt: Date.now(),
    });
    const session = sessionOf(alice.id, { executionId: "exec_production_home", maxCalls: 10 });
    const before = await ledgerOf(env, alice.id).storageUse();
    const reply = await loaderRunner(env.LOADER, exports).run(prepared.runnerRequest, session);
    expect(reply.ok && reply.report.calls[0]).toMatchObject({
      ok: true,
      outputJson: JSON.stringify({ kv: "production", db: 42, refused: "pragma" }),
    });
    expect(session.counters).toEqual({ dbQueries: 4, dbRejected: 1, kvReads: 1, kvWrites: 1 });
    // The writes reached the tenant's storage account from the entrypoint's own requests.
    const after = await ledgerOf(env, alice.id).storageUse();
    expect(after.kvBytes - before.kvBytes).toBe("home".length + "production".length);
    expect(after.dbBytes).toBeGreaterThan(before.dbBytes);
  });
});

describe("a job that cannot read its ctx", () => {
  it("gets no bindings, and one that reads ctx through `arguments` still gets them", async () => {
    const offered = (code: string) =>
      prepareEdgeJob(ExecutionRequest.parse({ runtime: "edge", code }), {
        executionId: "exec_offered",
        trustLevel: "high",
        acceptedAt: Date.now(),
      }).runnerRequest.spec.bindings;
    const pure = "export default async function (input) { return typeof input }";
    const viaArguments = `export default async function () {
      const { env } = arguments[1];
      await env.KV.put("via-arguments", "yes");
      return env.KV.get("via-arguments");
    }`;
    expect(offered(pure)).toEqual([]);
    expect(offered(viaArguments)).toEqual(["DB", "KV"]);

    expect((await alice.execute({ code: pure, input: 1 })).body.output).toBe("number");
    const { status, body } = await alice.execute({ code: viaArguments });
    expect(status).toBe(200);
    expect(body.output).toBe("yes");
  });
});

describe("what a job's calls can cost the dispatcher", () => {
  /** Counts the calls that reach the dispatcher, and how many were there at once. */
  class ObservedSession extends BindingSession {
    arrived = 0;
    peakInFlight = 0;
    #inFlight = 0;
    override async call(raw: unknown) {
      this.arrived++;
      this.peakInFlight = Math.max(this.peakInFlight, ++this.#inFlight);
      try {
        return await super.call(raw);
      } finally {
        this.#inFlight--;
      }
    }
  }

  async function runObserved(code: string, bindingCalls: number) {
    const executionId = `exec_${crypto.randomUUID().replaceAll("-", "")}`;
    const job = ExecutionRequest.parse({ runtime: "edge", code, limits: { bindingCalls } });
    const prepared = prepareEdgeJob(job, { executionId, trustLevel: "high", acceptedAt: Date.now() });
    const session = new ObservedSession({
      executionId,
      tenantId: alice.id,
      trustLevel: "high",
      maxCalls: bindingCalls,
      db: d1JobDatabase(env.JOB_DB),
      kv: env.JOB_KV,
      storage: storageOf(alice.id),
    });
    const reply = await loaderRunner(env.LOADER, exports).run(prepared.runnerRequest, session);
    const first = reply.ok ? reply.report.calls[0] : undefined;
    return { session, output: first?.ok ? (JSON.parse(first.outputJson) as unknown) : first };
  }

  it("sends at most 4 calls at once and none past the quota, however many the job fires", async () => {
    const { session, output } = await runObserved(
      `export default async (_input, { env }) => {
        const calls = [];
        for (let i = 0; i < 30; i++) calls.push(env.KV.get("k" + i).then(() => "ok", (error) => error.rule));
        return Promise.all(calls);
      }`,
      6,
    );
    expect(output).toEqual([...Array<string>(6).fill("ok"), ...Array<string>(24).fill("binding_call_quota")]);
    expect(session.arrived).toBe(6);
    expect(session.peakInFlight).toBe(4);
  });

  it("keeps a call over 1 MiB of JSON in the job's isolate", async () => {
    const { session, output } = await runObserved(
      `export default async (_input, { env }) => {
        const big = "x".repeat(2 * 1024 * 1024);
        const calls = [];
        for (let i = 0; i < 8; i++) calls.push(env.KV.put("big" + i, big).then(() => "ok", (error) => error.rule));
        calls.push(env.DB.query("SELECT ?", [big]).then(() => "ok", (error) => error.rule));
        return Promise.all(calls);
      }`,
      100,
    );
    expect(output).toEqual(Array<string>(9).fill("call_too_large"));
    expect(session.arrived).toBe(0);
  });

  it("refuses anything but a call's JSON text, before parsing it", async () => {
    const session = sessionOf(alice.id, { executionId: "exec_wire_form", maxCalls: 10 });
    const rules = await Promise.all(
      [
        { binding: "KV", method: "get", key: "k" },
        "not json",
        JSON.stringify({ binding: "KV", method: "get", key: "k", extra: [[["deep"]]] }),
        JSON.stringify({ binding: "KV", method: "put", key: "k", value: "x".repeat(1024 * 1024) }),
      ].map(async (raw) => {
        const answer = await session.call(raw);
        return answer.ok ? "ok" : answer.error.rule;
      }),
    );
    expect(rules).toEqual(["malformed_call", "malformed_call", "malformed_call", "call_too_large"]);
    expect(session.counters).toEqual({ dbQueries: 0, dbRejected: 0, kvReads: 0, kvWrites: 0 });
  });
});
