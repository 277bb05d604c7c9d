/**
 * Hostile statements for the SQL policy, as seen by tenant "acme" with every kind allowed (unless a
 * third column narrows the kinds). Each is either refused with the named rule or "confined":
 * accepted, but rewritten so it can only touch acme's own tables (d1.test.ts runs those against a
 * real D1 holding other tenants' and the platform's tables, and checks nothing leaks).
 */
import { READ_ONLY_KINDS, READ_WRITE_KINDS, type SqlRule, type StatementKind } from "../../../src/bindings/sql";

export type Expectation = SqlRule | "confined";
export type CorpusEntry = readonly [sql: string, expected: Expectation, kinds?: ReadonlySet<StatementKind>];

export const HOSTILE: readonly CorpusEntry[] = [
  // stacked queries and comment tricks
  ["SELECT 1; DROP TABLE users", "multiple_statements"],
  ["SELECT * FROM users; SELECT * FROM sqlite_master", "multiple_statements"],
  ["SELECT * FROM users WHERE id = 1; ATTACH 'x.db' AS x", "multiple_statements"],
  ["SELECT 1 --; DROP TABLE users", "confined"],
  ["SELECT 1 /*; DROP TABLE users */", "confined"],
  ["SELECT * FROM users -- \n; DROP TABLE users", "multiple_statements"],
  ["SEL/**/ECT * FROM users", "parse_error"],
  ["SELECT * FROM users /* unterminated", "parse_error"],
  ["DROP/**/TABLE users", "statement_kind_not_allowed", READ_ONLY_KINDS],
  [";;SELECT * FROM users;;", "confined"],
  ["", "empty_statement"],
  // recursion without a bound: rows from nothing, until D1's 30 s limit
  ["WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c", "unbounded_recursion"],
  ["WITH c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c", "unbounded_recursion"],
  ["WITH c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 1e9) SELECT count(*) FROM c", "unbounded_recursion"],
  ["WITH c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 50) SELECT count(*) FROM c", "confined"],
  // SQLite recurses through skipped rows too
  [
    "WITH c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 1 OFFSET 30000000) SELECT x FROM c",
    "unbounded_recursion",
  ],
  ["WITH c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 100000000, 1) SELECT x FROM c", "unbounded_recursion"],
  ["WITH c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 10 OFFSET 5) SELECT x FROM c", "confined"],
  // bounded CTEs (and JSON) joined: their rows multiply, with no table needed
  ["WITH c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 10000) SELECT count(*) FROM c, c AS d", "join_too_large"],
  [
    "WITH c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 400) SELECT count(*) FROM c, c AS d, c AS e",
    "join_too_large",
  ],
  [
    "WITH c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 10000), d AS (SELECT x FROM c) SELECT count(*) FROM d, d AS e",
    "join_too_large",
  ],
  [
    "WITH b(y) AS (SELECT 1 UNION ALL SELECT y+1 FROM b LIMIT 10000), a(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM a, b WHERE y = 10000 LIMIT 10000) SELECT count(*) FROM a",
    "join_too_large",
  ],
  [
    "WITH c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 10000) SELECT x FROM users WHERE id IN (SELECT c.x FROM c, c AS d)",
    "join_too_large",
  ],
  ["SELECT count(*) FROM json_each(?), json_each(?)", "join_too_large"],
  // functions that make values of any size out of nothing
  ["SELECT length(trim(printf('%.*c', 1000000, 'a'), printf('%.*c', 999999, 'b') || 'a'))", "forbidden_function"],
  ["SELECT printf('%2000000s', 'x')", "forbidden_function"],
  ["SELECT printf(?, 1)", "forbidden_function"],
  ["SELECT format('%.5000f', 1)", "forbidden_function"],
  ["SELECT length(randomblob(2000000))", "forbidden_function"],
  ["SELECT randomblob(?)", "forbidden_function"],
  [
    "WITH c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 10000), a AS (SELECT count(*) FROM b), b AS (SELECT 1 FROM c, c AS d, c AS e) SELECT * FROM a",
    "unsupported_syntax",
  ],
  [
    "SELECT count(*) OVER (ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING EXCLUDE CURRENT ROW) FROM users",
    "unsupported_syntax",
  ],
  [`WITH v(x) AS (VALUES ${"(1), ".repeat(300)}(1)) SELECT count(*) FROM v, v AS w, v AS z`, "join_too_large"],
  ["INSERT INTO users (id) SELECT a.value FROM json_each(?) AS a, json_each(?) AS b", "join_too_large"],
  // RETURNING whose rows are not bounded by the statement's text
  ["UPDATE users SET name = name RETURNING *", "unbounded_returning"],
  ["INSERT INTO users (id) SELECT x FROM (SELECT 1 AS x) RETURNING id", "unbounded_returning"],
  // separators the parser reads for free, on every backtrack
  ["SELECT 1 IN " + "(".repeat(12) + " ".repeat(90_000) + " SELECT", "too_complex"],
  ["SELECT 1 IN " + "(".repeat(14) + "/*" + "a".repeat(90_000) + "*/ SELECT", "too_complex"],
  ["SELECT 1 /* never closed " + "a".repeat(1000), "parse_error"],
  // long tokens, which the parser also re-reads on every backtrack without counting them
  ["SELECT 1 IN " + "(".repeat(12) + "SELECT " + "1".repeat(99_000), "too_complex"],
  ["SELECT 1 IN " + "(".repeat(12) + "SELECT '" + "a".repeat(90_000) + "'", "too_complex"],
  ["SELECT 1 IN " + "(".repeat(12) + "SELECT " + "n".repeat(10_000), "too_complex"],
  ["SELECT x'" + "41".repeat(100) + "', '" + "a".repeat(100) + "', " + "n".repeat(100) + " FROM users", "confined"],
  // nesting that makes the parser backtrack exponentially (each further "(" doubles its work)
  ["SELECT " + "(".repeat(24) + "1", "too_complex"],
  ["SELECT ((((((((((((((((SELECT))))))))))))))))", "too_complex"],
  ["SELECT 1 IN ((((((((((((SELECT", "too_complex"],
  ["SELECT * FROM users WHERE ((((((((((((SELECT 1 FROM))))))))))))", "too_complex"],
  ["-- nothing but a comment", "empty_statement"],
  // other tenants' tables
  ["SELECT * FROM users UNION SELECT * FROM t_other__users", "reserved_name"],
  ['SELECT * FROM "t_other__users"', "reserved_name"],
  ["SELECT * FROM T_OTHER__USERS", "reserved_name"],
  ["SELECT * FROM [t_other__users]", "reserved_name"],
  ["SELECT * FROM users__x", "reserved_name"],
  ["INSERT INTO users SELECT * FROM t_other__users", "reserved_name"],
  ["DELETE FROM t_other__users", "reserved_name"],
  ["REPLACE INTO t_other__users VALUES (1)", "reserved_name"],
  ["UPDATE users SET name = (SELECT name FROM t_other__users LIMIT 1)", "reserved_name"],
  ["SELECT * FROM users WHERE id IN t_other__users", "reserved_name"],
  ["SELECT * FROM users u, (SELECT * FROM t_other__users)", "reserved_name"],
  ["WITH t_other__users AS (SELECT 1) SELECT * FROM t_other__users", "reserved_name"],
  ["CREATE TABLE x (a REFERENCES t_other__users(id))", "reserved_name"],
  ["CREATE INDEX t_other__ix ON users (name)", "reserved_name"],
  ["ALTER TABLE users RENAME TO t_other__users", "reserved_name"],
  ["SELECT * FROM users AS t_other__users", "confined"],
  ["SELECT * FROM users WHERE id = ? OR 1 = 1", "confined"],
  // other schemas
  ["SELECT * FROM main.users", "cross_namespace"],
  ["SELECT * FROM temp.users", "cross_namespace"],
  ["SELECT main.users.id FROM users", "cross_namespace"],
  ["SELECT 1 WHERE 1 IN main.users", "cross_namespace"],
  ["UPDATE main.users SET name = 'x'", "cross_namespace"],
  ["CREATE TABLE temp.x (a)", "cross_namespace"],
  ["CREATE TEMP TABLE x (a)", "unsupported_syntax"],
  ["CREATE TABLE c (pid TEXT DEFAULT 'x' REFERENCES p(id) ON DELETE SET DEFAULT)", "unsupported_syntax"],
  [
    "CREATE TABLE c (pid TEXT, FOREIGN KEY (pid) REFERENCES p(id) ON UPDATE CASCADE ON DELETE SET DEFAULT)",
    "unsupported_syntax",
  ],
  // ATTACH, PRAGMA, VACUUM and friends
  ["ATTACH DATABASE 'other.db' AS other", "attach_detach"],
  ["DETACH DATABASE other", "attach_detach"],
  ["PRAGMA table_info(users)", "pragma"],
  ["PRAGMA writable_schema = 1", "pragma"],
  ["SELECT * FROM pragma_table_info('users')", "pragma"],
  ["SELECT * FROM pragma_table_list", "pragma"],
  ["SELECT name FROM users WHERE id IN (SELECT cid FROM pragma_table_info('t_other__users'))", "pragma"],
  ["VACUUM", "vacuum"],
  ["VACUUM INTO '/tmp/dump.db'", "vacuum"],
  ["REINDEX", "maintenance"],
  ["ANALYZE users", "maintenance"],
  // the schema tables, however spelled
  ["SELECT * FROM sqlite_master", "schema_table"],
  ["SELECT sql FROM sqlite_schema", "schema_table"],
  ["SELECT * FROM sqlite_temp_master", "schema_table"],
  ["SELECT * FROM sqlite_sequence", "schema_table"],
  ["SELECT * FROM users WHERE id IN (SELECT rootpage FROM sqlite_master)", "schema_table"],
  ["SELECT * FROM users JOIN sqlite_schema s ON 1", "schema_table"],
  ["WITH s AS (SELECT * FROM sqlite_master) SELECT * FROM s", "schema_table"],
  ["WITH sqlite_master AS (SELECT 1) SELECT * FROM sqlite_master", "schema_table"],
  ["SELECT 1 WHERE 'users' IN sqlite_master", "schema_table"],
  ["SELECT * FROM json_each((SELECT group_concat(sql) FROM sqlite_master))", "schema_table"],
  ['SELECT * FROM "sqlite_master"', "schema_table"],
  ["SELECT * FROM [sqlite_master]", "schema_table"],
  ["SELECT * FROM `sqlite_master`", "schema_table"],
  ["SELECT * FROM SqLiTe_MaStEr", "schema_table"],
  ['SELECT * FROM "sqlite_master "', "schema_table"],
  ["SELECT * FROM 'sqlite_master'", "parse_error"],
  ["INSERT INTO sqlite_master VALUES ('table', 'x', 'x', 0, '')", "schema_table"],
  ["UPDATE sqlite_schema SET sql = 'x'", "schema_table"],
  ["SELECT * FROM users INDEXED BY sqlite_autoindex_users_1", "schema_table"],
  ["CREATE TABLE x AS SELECT * FROM sqlite_master", "schema_table"],
  ["SELECT * FROM _cf_KV", "schema_table"],
  ["SELECT * FROM d1_migrations", "schema_table"],
  // unicode look-alikes are simply other names, inside the namespace
  ["SELECT * FROM \u0455qlite_master", "confined"],
  ['SELECT * FROM "\u0455qlite_master"', "confined"],
  ["SELECT * FROM sqlite\uff3fmaster", "confined"],
  // functions
  ["SELECT load_extension('/tmp/evil.so')", "forbidden_function"],
  ["SELECT \"load_extension\"('x')", "forbidden_function"],
  ["SELECT LOAD_EXTENSION('x')", "forbidden_function"],
  ["SELECT * FROM users WHERE name = load_extension('x', 'init')", "forbidden_function"],
  ["SELECT sqlite_version()", "forbidden_function"],
  ["SELECT count(*) FROM users WHERE name = sqlite_compileoption_get(0)", "forbidden_function"],
  ["SELECT readfile('/etc/passwd')", "forbidden_function"],
  ["SELECT writefile('/tmp/x', 'y')", "forbidden_function"],
  ["SELECT fts3_tokenizer('simple')", "forbidden_function"],
  ["SELECT last_insert_rowid()", "forbidden_function"],
  ["SELECT * FROM users WHERE id = (SELECT changes())", "forbidden_function"],
  ["SELECT * FROM generate_series(1, 10)", "forbidden_function"],
  ["SELECT json_each('[1]')", "forbidden_function"],
  ["SELECT RAISE(IGNORE)", "unsupported_syntax"],
  // triggers, views, virtual tables, transactions, EXPLAIN
  ["CREATE TRIGGER tr AFTER INSERT ON users BEGIN DELETE FROM t_other__users; END", "unsupported_statement"],
  ["CREATE VIEW v AS SELECT * FROM users", "unsupported_statement"],
  ["CREATE VIRTUAL TABLE f USING fts5(body)", "unsupported_statement"],
  ["BEGIN TRANSACTION", "unsupported_statement"],
  ["EXPLAIN SELECT * FROM users", "unsupported_statement"],
  // kinds the caller did not allow
  ["DELETE FROM users", "statement_kind_not_allowed", READ_ONLY_KINDS],
  ["WITH x AS (SELECT 1) DELETE FROM users", "statement_kind_not_allowed", READ_ONLY_KINDS],
  ["INSERT INTO users SELECT * FROM users", "statement_kind_not_allowed", READ_ONLY_KINDS],
  ["DROP TABLE users", "statement_kind_not_allowed", READ_WRITE_KINDS],
  ["CREATE TABLE x (a)", "statement_kind_not_allowed", READ_WRITE_KINDS],
  // CTE shadowing: a statement target is always a table, so this hits acme's own x
  ["WITH x AS (SELECT 1) DELETE FROM x", "confined"],
  ["WITH x AS (SELECT 1) SELECT * FROM x NOT INDEXED", "confined"],
  ["WITH users AS (SELECT * FROM secrets) SELECT * FROM users", "confined"],
  // tokens that the parser and SQLite could read differently
  ["SELECT $a(b)", "parse_error"],
  ["SELECT @a", "parse_error"],
  ["SELECT * FROM users WHERE name LI\u212aE 'a%'", "unsupported_syntax"],
  ["SELECT\u00a0* FROM users", "parse_error"],
  ["SELECT * FROM users\fUNION SELECT * FROM t_other__users", "parse_error"],
  ["SELECT 'a\u0000b'", "unsupported_syntax"],
  ['SELECT * FROM "users\u0000"', "invalid_name"],
  ['SELECT * FROM ""', "invalid_name"],
  [`SELECT * FROM users WHERE name = '${"x".repeat(100_001)}'`, "too_long"],
  [`SELECT ${"(".repeat(3000)}1${")".repeat(3000)}`, "parse_error"],
];
