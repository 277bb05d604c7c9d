import { describe, expect, it } from "vitest";
import {
  ALL_KINDS,
  checkStatement,
  physicalName,
  READ_ONLY_KINDS,
  READ_WRITE_KINDS,
  SQL_RULES,
  type SqlVerdict,
  type StatementKind,
} from "../../../src/bindings/sql";
import { HOSTILE } from "./corpus";

const TENANT = "acme";

function check(sql: string, kinds: ReadonlySet<StatementKind> = ALL_KINDS): SqlVerdict {
  return checkStatement(sql, { tenantKey: TENANT, allowedKinds: kinds });
}

function accepted(sql: string, kinds?: ReadonlySet<StatementKind>): Extract<SqlVerdict, { ok: true }> {
  const verdict = check(sql, kinds);
  if (!verdict.ok) throw new Error(`refused (${verdict.rule}): ${verdict.message}\n${sql}`);
  return verdict;
}

function refusedWith(sql: string, kinds?: ReadonlySet<StatementKind>): string {
  const verdict = check(sql, kinds);
  return verdict.ok ? `accepted: ${verdict.sql}` : verdict.rule;
}

describe("SELECT is rewritten to the tenant's tables", () => {
  it("renames tables in FROM and JOIN, keeping the job's name usable as a qualifier", () => {
    const verdict = accepted(
      "SELECT u.id, count(*) AS n FROM users u JOIN orders ON orders.uid = u.id " +
        "WHERE u.name = ? GROUP BY u.id HAVING count(*) > ?2 ORDER BY n DESC LIMIT 10 OFFSET ?3",
    );
    expect(verdict).toEqual({
      ok: true,
      kind: "select",
      tables: ["users", "orders"],
      sql:
        'SELECT u.id, count(*) AS n FROM "t_acme__users" u JOIN "t_acme__orders" AS "orders" ON orders.uid = u.id ' +
        "WHERE u.name = ? GROUP BY u.id HAVING count(*) > ?2 ORDER BY n DESC LIMIT 10 OFFSET ?3",
    });
  });

  it("renames tables in subqueries and CTE bodies, never the CTE names", () => {
    const verdict = accepted(
      "WITH recent AS (SELECT * FROM orders WHERE ts > :since) " +
        "SELECT users.name FROM users WHERE users.id IN (SELECT uid FROM recent) " +
        "AND EXISTS (SELECT 1 FROM bans b WHERE b.uid = users.id)",
    );
    expect(verdict.sql).toBe(
      'WITH recent AS (SELECT * FROM "t_acme__orders" AS "orders" WHERE ts > :since) ' +
        'SELECT users.name FROM "t_acme__users" AS "users" WHERE users.id IN (SELECT uid FROM recent) ' +
        'AND EXISTS (SELECT 1 FROM "t_acme__bans" b WHERE b.uid = users.id)',
    );
    expect(verdict.tables).toEqual(["orders", "users", "bans"]);
  });

  it("follows SQLite's CTE scoping: compound SELECTs, recursion, forward references, shadowing", () => {
    expect(accepted("WITH x AS (SELECT 1) SELECT * FROM y UNION ALL SELECT * FROM x").sql).toBe(
      'WITH x AS (SELECT 1) SELECT * FROM "t_acme__y" AS "y" UNION ALL SELECT * FROM x',
    );
    expect(
      accepted("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 5 LIMIT 5) SELECT n FROM c")
        .tables,
    ).toEqual([]);
    // A CTE written later in the same WITH is one (SQLite resolves it so, never to a table), but its
    // rows are not known yet when the earlier body is counted (work.ts): refused, not read as a table.
    expect(check("WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a")).toMatchObject({
      ok: false,
      rule: "unsupported_syntax",
    });
    // A CTE shadowed inside another's body is not that body's own recursion: its rows count.
    expect(
      check(
        "WITH c AS (WITH c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 10000) " +
          "SELECT count(*) FROM c, c AS d, c AS e UNION ALL SELECT 1 LIMIT 1) SELECT * FROM c",
      ),
    ).toMatchObject({ ok: false, rule: "join_too_large" });
    // The inner WITH ends with its subquery: the outer `x` is the tenant's table.
    expect(accepted("SELECT * FROM (WITH x AS (SELECT 1) SELECT * FROM x), x").sql).toBe(
      'SELECT * FROM (WITH x AS (SELECT 1) SELECT * FROM x), "t_acme__x" AS "x"',
    );
    expect(accepted("WITH ids AS (SELECT 1) SELECT * FROM users WHERE id IN ids").tables).toEqual(["users"]);
  });

  it("bounds a recursive CTE: it must end with LIMIT n, n a number up to 10 000", () => {
    const recursive = (limit: string, keyword = "RECURSIVE ") =>
      check(`WITH ${keyword}c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c${limit}) SELECT count(*) FROM c`);
    expect(recursive(" LIMIT 10000")).toMatchObject({ ok: true });
    // SQLite needs no RECURSIVE keyword: a CTE that names itself is recursive.
    for (const [limit, keyword] of [
      ["", "RECURSIVE "],
      ["", ""],
      [" LIMIT 10001", ""],
      [" LIMIT ?", ""],
      [" LIMIT -1", ""],
    ]) {
      expect(recursive(limit!, keyword)).toMatchObject({ ok: false, rule: "unbounded_recursion" });
    }
    // A LIMIT on the outer query does not stop the recursion inside.
    expect(check("WITH c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c LIMIT 5")).toMatchObject({
      ok: false,
      rule: "unbounded_recursion",
    });
  });

  it("bounds the rows joined CTEs and JSON can make, and leaves tables, single sources and small joins alone", () => {
    const series = (n: number) => `WITH c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT ${n})`;
    for (const sql of [
      `${series(10_000)} SELECT count(*) FROM c`,
      `${series(3_000)} SELECT count(*) FROM c, c AS d`,
      `${series(200)} SELECT count(*) FROM c, c AS d, c AS e`,
      `${series(10_000)} SELECT x FROM c UNION ALL SELECT x FROM c`,
      "SELECT u.id, t.value FROM users u, json_each(u.tags) t",
      "SELECT * FROM users a, users b, users c",
      `${series(10_000)} INSERT INTO users (id) SELECT x FROM c`,
    ]) {
      expect(check(sql), sql).toMatchObject({ ok: true });
    }
    expect(check(`${series(3_400)} SELECT count(*) FROM c, c AS d`)).toMatchObject({
      ok: false,
      rule: "join_too_large",
    });
  });

  it("counts json_each of a bound value by the value's length, numbering parameters as SQLite does", () => {
    const joined = "SELECT a.value FROM json_each(?1) a JOIN json_each(?2) b ON a.key = b.key";
    const withLengths = (sql: string, paramLengths: number[]) =>
      checkStatement(sql, { tenantKey: TENANT, allowedKinds: ALL_KINDS, paramLengths });
    expect(withLengths(joined, [2_000, 2_000])).toMatchObject({ ok: true });
    expect(withLengths(joined, [200_000, 200_000])).toMatchObject({ ok: false, rule: "join_too_large" });
    // Without the values, a parameter counts as the largest JSON D1 holds.
    expect(check(joined)).toMatchObject({ ok: false, rule: "join_too_large" });
    // `?` is one past the largest number so far, `:name` keeps its number: here the big value is the third.
    const mixed = "SELECT 1 FROM json_each(?2) a, json_each(?) b, json_each(:x) c WHERE :x = ?1";
    expect(withLengths(mixed, [10, 10, 10, 10])).toMatchObject({ ok: true });
    // A parameter without a value (the fourth, :x, here) counts as the largest.
    expect(withLengths(mixed, [10, 10, 10])).toMatchObject({ ok: false, rule: "join_too_large" });
    expect(withLengths(mixed, [10, 10, 100_000, 10])).toMatchObject({ ok: true });
    expect(withLengths(mixed, [10, 100_000, 100_000, 100_000])).toMatchObject({ ok: false, rule: "join_too_large" });
    // A string written in the statement counts by its length; a computed argument as the largest.
    expect(check("SELECT 1 FROM json_each('[1,2,3]') a, json_each('[4,5]') b")).toMatchObject({ ok: true });
    expect(check("SELECT 1 FROM json_each(json_array(1, 2)) a, json_each(json_array(3)) b")).toMatchObject({
      ok: false,
      rule: "join_too_large",
    });
  });

  it("keeps printf, format and randomblob to sizes written out in the statement", () => {
    for (const sql of [
      "SELECT printf('%d items, %.2f%%', 3, 1.5)",
      "SELECT format('%5s|%-10s|%08.3f', 'a', 'b', 2.5)",
      "SELECT lower(hex(randomblob(16)))",
      "SELECT printf('%1000s', 'x')",
    ]) {
      expect(check(sql), sql).toMatchObject({ ok: true });
    }
  });

  it("caps a query's rows with a LIMIT SQLite applies, keeping the job's own LIMIT within it", () => {
    const capped = (sql: string) => {
      const verdict = checkStatement(sql, { tenantKey: TENANT, allowedKinds: ALL_KINDS, maxRows: 1001 });
      if (!verdict.ok) throw new Error(verdict.message);
      return verdict.sql;
    };
    expect(capped("SELECT * FROM users")).toBe('SELECT * FROM "t_acme__users" AS "users" LIMIT 1001');
    expect(capped("SELECT 1 UNION ALL VALUES (2)")).toBe("SELECT 1 UNION ALL VALUES (2) LIMIT 1001");
    const bounded = "(SELECT CASE WHEN v < 0 OR v > 1001 THEN 1001 ELSE v END FROM (SELECT (?) AS v))";
    expect(capped("SELECT * FROM users ORDER BY id LIMIT ? OFFSET 5")).toBe(
      `SELECT * FROM "t_acme__users" AS "users" ORDER BY id LIMIT ${bounded} OFFSET 5`,
    );
    // Writes are left alone.
    expect(capped("DELETE FROM users")).toBe('DELETE FROM "t_acme__users" AS "users"');
  });

  it("renames the table after IN, index hints, and tables inside table-valued functions' arguments", () => {
    expect(accepted("SELECT 1 WHERE ? IN users").sql).toBe('SELECT 1 WHERE ? IN "t_acme__users"');
    expect(accepted("SELECT * FROM users INDEXED BY users_by_name WHERE name = ?").sql).toBe(
      'SELECT * FROM "t_acme__users" AS "users" INDEXED BY "t_acme__users_by_name" WHERE name = ?',
    );
    expect(
      accepted("SELECT j.value FROM docs, json_each(docs.body) AS j WHERE json_extract(docs.body, '$.a') = ?").sql,
    ).toBe(
      'SELECT j.value FROM "t_acme__docs" AS "docs", json_each(docs.body) AS j WHERE json_extract(docs.body, \'$.a\') = ?',
    );
  });

  it("accepts window functions, JSON operators, dates and CASE", () => {
    const verdict = accepted(
      "SELECT id, row_number() OVER (PARTITION BY g ORDER BY ts DESC) AS rn, body ->> '$.title', " +
        "strftime('%Y', ts), CASE WHEN n > 0 THEN 'pos' ELSE 'neg' END FROM events",
    );
    expect(verdict.tables).toEqual(["events"]);
  });

  it("removes comments and re-quotes every quoted name with double quotes", () => {
    expect(accepted("SELECT [a], `b`, \"c\", 'it''s' /* note */ FROM [Users] -- trailing").sql).toBe(
      `SELECT "a", "b", "c", 'it''s'   FROM "t_acme__Users" AS "Users"`,
    );
    expect(accepted("SELECT * FROM USERS").tables).toEqual(["users"]);
  });

  it("drops stray semicolons around the one statement", () => {
    expect(accepted(";SELECT 1;;").sql).toBe("SELECT 1");
  });
});

describe("writes are rewritten when allowed", () => {
  it("INSERT … RETURNING, and an UPSERT that refers to the target by name", () => {
    expect(accepted("INSERT INTO users (name, email) VALUES (?1, ?2) RETURNING id").sql).toBe(
      'INSERT INTO "t_acme__users" AS "users" (name, email) VALUES (?1, ?2) RETURNING id',
    );
    expect(
      accepted("INSERT INTO kv (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = kv.v + excluded.v RETURNING kv.v")
        .sql,
    ).toBe(
      'INSERT INTO "t_acme__kv" AS "kv" (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = kv.v + excluded.v ' +
        'RETURNING "t_acme__kv".v',
    );
  });

  it("INSERT … SELECT renames both sides", () => {
    const verdict = accepted("INSERT OR IGNORE INTO archive (id) SELECT id FROM users WHERE deleted = 1");
    expect(verdict.sql).toBe(
      'INSERT OR IGNORE INTO "t_acme__archive" AS "archive" (id) SELECT id FROM "t_acme__users" AS "users" WHERE deleted = 1',
    );
    expect(verdict.kind).toBe("insert");
  });

  it("UPDATE with FROM", () => {
    const verdict = accepted("UPDATE users SET score = s.total FROM scores AS s WHERE s.uid = users.id");
    expect(verdict).toEqual({
      ok: true,
      kind: "update",
      tables: ["users", "scores"],
      sql:
        'UPDATE "t_acme__users" AS "users" SET score = s.total FROM "t_acme__scores" AS s ' + "WHERE s.uid = users.id",
    });
  });

  it("RETURNING only where the rows it returns are as many as the statement lists (INSERT … VALUES)", () => {
    for (const sql of [
      "UPDATE users SET score = 1 RETURNING id",
      "DELETE FROM sessions RETURNING *",
      "INSERT INTO archive (id) SELECT id FROM users RETURNING id",
    ]) {
      expect(refusedWith(sql)).toBe("unbounded_returning");
    }
    expect(accepted("INSERT INTO users DEFAULT VALUES RETURNING id").kind).toBe("insert");
  });

  it("DELETE with a subquery", () => {
    expect(accepted("DELETE FROM sessions WHERE uid IN (SELECT id FROM users WHERE banned)").sql).toBe(
      'DELETE FROM "t_acme__sessions" AS "sessions" WHERE uid IN (SELECT id FROM "t_acme__users" AS "users" WHERE banned)',
    );
  });

  it("the read-only set refuses every write, the read-write set every schema change", () => {
    for (const sql of ["INSERT INTO users DEFAULT VALUES", "UPDATE users SET a = 1", "DELETE FROM users"]) {
      expect(refusedWith(sql, READ_ONLY_KINDS)).toBe("statement_kind_not_allowed");
      expect(check(sql, READ_WRITE_KINDS).ok).toBe(true);
    }
    expect(check("SELECT * FROM users", READ_ONLY_KINDS).ok).toBe(true);
  });
});

describe("schema statements are rewritten when allowed", () => {
  it("CREATE TABLE renames the table and its REFERENCES", () => {
    const sql =
      "CREATE TABLE IF NOT EXISTS posts (id INTEGER PRIMARY KEY, uid INTEGER NOT NULL REFERENCES users(id) " +
      "ON DELETE CASCADE, body TEXT DEFAULT '' CHECK (length(body) < 10000), FOREIGN KEY (uid) REFERENCES users(id)) STRICT";
    const verdict = accepted(sql);
    expect(verdict).toEqual({
      ok: true,
      kind: "create_table",
      tables: ["posts", "users"],
      sql:
        'CREATE TABLE IF NOT EXISTS "t_acme__posts" (id INTEGER PRIMARY KEY, uid INTEGER NOT NULL REFERENCES "t_acme__users"(id) ' +
        "ON DELETE CASCADE, body TEXT DEFAULT '' CHECK (length(body) < 10000), FOREIGN KEY (uid) REFERENCES \"t_acme__users\"(id)) STRICT",
    });
    expect(refusedWith(sql, READ_WRITE_KINDS)).toBe("statement_kind_not_allowed");
  });

  it("CREATE INDEX prefixes the index name too (indexes share SQLite's namespace with tables)", () => {
    expect(
      accepted("CREATE UNIQUE INDEX IF NOT EXISTS posts_by_uid ON posts (uid, created DESC) WHERE uid > 0"),
    ).toEqual({
      ok: true,
      kind: "create_index",
      tables: ["posts"],
      sql: 'CREATE UNIQUE INDEX IF NOT EXISTS "t_acme__posts_by_uid" ON "t_acme__posts" (uid, created DESC) WHERE uid > 0',
    });
    expect(refusedWith("CREATE INDEX i ON posts (uid)", READ_WRITE_KINDS)).toBe("statement_kind_not_allowed");
  });

  it("DROP TABLE, DROP INDEX, ALTER TABLE", () => {
    expect(accepted("DROP TABLE IF EXISTS posts").sql).toBe('DROP TABLE IF EXISTS "t_acme__posts"');
    expect(accepted("DROP INDEX posts_by_uid").sql).toBe('DROP INDEX "t_acme__posts_by_uid"');
    expect(accepted("ALTER TABLE posts RENAME TO articles")).toEqual({
      ok: true,
      kind: "alter_table",
      tables: ["posts", "articles"],
      sql: 'ALTER TABLE "t_acme__posts" RENAME TO "t_acme__articles"',
    });
    expect(accepted("ALTER TABLE posts ADD COLUMN tag INTEGER REFERENCES tags(id)").sql).toBe(
      'ALTER TABLE "t_acme__posts" ADD COLUMN tag INTEGER REFERENCES "t_acme__tags"(id)',
    );
    expect(refusedWith("DROP TABLE a, b")).toBe("unsupported_syntax");
  });
});

describe("the tenant key", () => {
  it("must be lowercase [a-z0-9]{1,32}; a bad one is a programming error", () => {
    for (const tenantKey of ["", "Acme", "a_b", "a-b", "x".repeat(33)]) {
      expect(() => checkStatement("SELECT 1", { tenantKey, allowedKinds: ALL_KINDS })).toThrow(TypeError);
    }
    expect(physicalName("t0", "users")).toBe("t_t0__users");
  });
});

describe("limits", () => {
  it("refuses statements over maxLength (D1's 100 000 characters by default)", () => {
    const options = { tenantKey: TENANT, allowedKinds: ALL_KINDS, maxLength: 20 };
    expect(checkStatement("SELECT * FROM users", options).ok).toBe(true);
    expect(checkStatement("SELECT * FROM users u", options)).toMatchObject({ ok: false, rule: "too_long" });
  });

  it("checks long ordinary statements within the parser's work budget", () => {
    const rows = Array.from({ length: 1000 }, (_, i) => `(${i}, 'x${i}', ?)`).join(", ");
    expect(accepted(`INSERT INTO items (a, b, c) VALUES ${rows}`).kind).toBe("insert");
    const terms = Array.from({ length: 300 }, (_, i) => `a = ${i}`).join(" OR ");
    expect(accepted(`SELECT * FROM items WHERE ${terms}`).kind).toBe("select");
    const nested = "SELECT " + "coalesce(abs(".repeat(15) + "1" + "), 0)".repeat(15);
    expect(accepted(nested).kind).toBe("select");
    expect(accepted("SELECT " + "(SELECT ".repeat(20) + "1" + ")".repeat(20)).kind).toBe("select");
  });

  it("refuses, rather than throws, when a statement is too deep to walk", () => {
    expect(check(`SELECT ${Array(30_000).fill("1").join("+")}`)).toMatchObject({ ok: false, rule: "parse_error" });
  });
});

describe("hostile corpus", () => {
  it("has at least 40 statements and uses every rule", () => {
    expect(HOSTILE.length).toBeGreaterThanOrEqual(40);
    const used = new Set(HOSTILE.map(([, expected]) => expected));
    for (const rule of SQL_RULES) expect(used, rule).toContain(rule);
  });

  for (const [sql, expected, kinds] of HOSTILE) {
    const label = sql.length > 90 ? `${sql.slice(0, 90)}…` : sql;
    it(`${expected}: ${JSON.stringify(label)}`, () => {
      const verdict = check(sql, kinds);
      if (expected === "confined") {
        if (!verdict.ok) throw new Error(`refused (${verdict.rule}): ${verdict.message}`);
        // Every physical name in the output is acme's; d1.test.ts runs these against real tables.
        for (const quoted of verdict.sql.match(/"t_[^"]*"/g) ?? []) expect(quoted).toMatch(/^"t_acme__/);
        expect(verdict.sql).not.toMatch(/DROP|ATTACH|PRAGMA/i);
      } else {
        expect(verdict.ok ? `accepted: ${verdict.sql}` : verdict.rule).toBe(expected);
      }
    });
  }
});
