/**
 * The rewritten statements run against real D1 (SQLite inside workerd), next to decoys: another
 * tenant's tables and unprefixed tables named like the job's, all full of a secret. The policy's
 * output must run, must only ever touch acme's tables, and must leave the decoys untouched.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { ALL_KINDS, checkStatement, type SqlVerdict } from "../../../src/bindings/sql";
import { HOSTILE } from "./corpus";

const SECRET = "SECRET-OF-SOMEONE-ELSE";
// Unprefixed names the jobs below use, plus another tenant's: what a rewrite bug would reach.
const DECOYS = ["users", "orders", "secrets", "kv", "x", "t_other__users", "t_other__secrets"];

function confine(sql: string, tenantKey = "acme"): string {
  const verdict: SqlVerdict = checkStatement(sql, { tenantKey, allowedKinds: ALL_KINDS });
  if (!verdict.ok) throw new Error(`refused (${verdict.rule}): ${verdict.message}`);
  return verdict.sql;
}

async function run(sql: string, binds: unknown[] = [], tenantKey = "acme"): Promise<Record<string, unknown>[]> {
  const { results } = await env.DB.prepare(confine(sql, tenantKey))
    .bind(...binds)
    .all<Record<string, unknown>>();
  return results;
}

async function decoySnapshot(): Promise<string> {
  const parts: string[] = [];
  for (const name of DECOYS) {
    const { results } = await env.DB.prepare(`SELECT * FROM "${name}" ORDER BY id`).all();
    parts.push(`${name}:${JSON.stringify(results)}`);
  }
  return parts.join("\n");
}

let before = "";

beforeAll(async () => {
  const statements = DECOYS.flatMap((name) => [
    env.DB.prepare(`DROP TABLE IF EXISTS "${name}"`),
    env.DB.prepare(`CREATE TABLE "${name}" (id INTEGER PRIMARY KEY, name TEXT, k TEXT UNIQUE, v TEXT, uid INTEGER)`),
    env.DB.prepare(`INSERT INTO "${name}" (id, name, k, v, uid) VALUES (1, ?1, ?1, ?1, 1)`).bind(SECRET),
  ]);
  await env.DB.batch(statements);
  before = await decoySnapshot();
});

describe("a tenant's session on D1", () => {
  it("creates, fills, reads, changes and drops its own tables, and nothing else", async () => {
    await run("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, k TEXT UNIQUE, v TEXT, uid INTEGER)");
    await run("CREATE TABLE orders (id INTEGER PRIMARY KEY, uid INTEGER REFERENCES users(id), total INTEGER)");
    await run("CREATE INDEX orders_by_uid ON orders (uid)");

    const inserted = await run("INSERT INTO users (name, k) VALUES (?1, ?2), (?3, ?4) RETURNING id, name", [
      "ada",
      "a",
      "bob",
      "b",
    ]);
    expect(inserted).toEqual([
      { id: 1, name: "ada" },
      { id: 2, name: "bob" },
    ]);
    await run("INSERT INTO orders (uid, total) VALUES (1, 10), (1, 5), (2, 7)");

    const upserted = await run(
      "INSERT INTO users (name, k, v) VALUES (?, ?, ?) ON CONFLICT (k) DO UPDATE SET v = users.v || excluded.v RETURNING users.v",
      ["ada", "a", "x"],
    );
    expect(upserted).toEqual([{ v: null }]);

    const report = await run(
      "WITH totals AS (SELECT uid, sum(total) AS spent FROM orders GROUP BY uid) " +
        "SELECT u.name, t.spent FROM users u JOIN totals t ON t.uid = u.id " +
        "WHERE u.id IN (SELECT uid FROM orders INDEXED BY orders_by_uid) ORDER BY t.spent DESC LIMIT ?",
      [10],
    );
    expect(report).toEqual([
      { name: "ada", spent: 15 },
      { name: "bob", spent: 7 },
    ]);

    await run(
      "UPDATE users SET v = o.total FROM (SELECT uid, max(total) AS total FROM orders GROUP BY uid) AS o " +
        "WHERE o.uid = users.id",
    );
    expect(await run("SELECT name, v FROM users WHERE v IS NOT NULL ORDER BY name")).toHaveLength(2);

    await run("DELETE FROM orders WHERE uid = ?", [2]);
    await run("ALTER TABLE orders RENAME TO purchases");
    expect(await run("SELECT count(*) AS n FROM purchases")).toEqual([{ n: 2 }]);
    await run("DROP INDEX orders_by_uid");

    // The physical tables are acme's; the decoys are as they were.
    const { results } = await env.DB.prepare(
      "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 't\\_acme\\_\\_%' ESCAPE '\\' ORDER BY name",
    ).all<{ name: string }>();
    expect(results.map((row) => row.name)).toEqual(["t_acme__purchases", "t_acme__users"]);
    expect(await decoySnapshot()).toBe(before);
  });

  it("another tenant with the same table names sees only its own rows", async () => {
    await run("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT)", [], "beta");
    await run("INSERT INTO users (name) VALUES ('carol')", [], "beta");
    expect(await run("SELECT name FROM users", [], "beta")).toEqual([{ name: "carol" }]);
    const acme = await run("SELECT name FROM users ORDER BY id");
    expect(acme.map((row) => row.name)).toEqual(["ada", "bob"]);
  });

  it("a job naming a platform table reaches its own (missing) table, not the platform's", async () => {
    for (const table of ["api_keys", "tenants", "executions"]) {
      await expect(run(`SELECT * FROM ${table}`)).rejects.toThrow(`no such table: t_acme__${table}`);
    }
  });
});

describe("hostile statements that the policy lets through stay inside acme's tables", () => {
  beforeAll(async () => {
    for (const table of ["secrets", "x"]) {
      await run(`CREATE TABLE IF NOT EXISTS ${table} (id INTEGER PRIMARY KEY, v TEXT)`);
    }
  });

  const confined = HOSTILE.filter(([, expected]) => expected === "confined");

  for (const [sql] of confined) {
    it(JSON.stringify(sql), async () => {
      const binds = (confine(sql).match(/\?/g) ?? []).map(() => 1);
      let output: string;
      try {
        output = JSON.stringify(await run(sql, binds));
      } catch (error) {
        // Failing is fine (e.g. acme has no table of that name); reaching a decoy is not.
        output = String(error);
        expect(output).not.toMatch(/no such table: (?!t_acme__)/);
      }
      expect(output).not.toContain(SECRET);
      expect(await decoySnapshot()).toBe(before);
    });
  }
});
