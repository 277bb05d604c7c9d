/**
 * The public vocabulary of the SQL policy: which statement kinds exist, why a statement can be
 * refused, and what a verdict carries. Kept free of the parser's types so callers never depend on it.
 */

/** The statement kinds a job may be allowed to run; anything else is never allowed. */
export const STATEMENT_KINDS = [
  "select",
  "insert",
  "update",
  "delete",
  "create_table",
  "create_index",
  "drop_table",
  "drop_index",
  "alter_table",
] as const;
export type StatementKind = (typeof STATEMENT_KINDS)[number];

/** A convenient read-only set: SELECT (with CTEs and subqueries) and nothing that writes. */
export const READ_ONLY_KINDS: ReadonlySet<StatementKind> = new Set<StatementKind>(["select"]);
/** Data reads and writes, but no schema changes. */
export const READ_WRITE_KINDS: ReadonlySet<StatementKind> = new Set<StatementKind>([
  "select",
  "insert",
  "update",
  "delete",
]);
/** Everything the policy knows how to confine. */
export const ALL_KINDS: ReadonlySet<StatementKind> = new Set<StatementKind>(STATEMENT_KINDS);

/** Machine-readable reasons for a refusal. README.md has one row per rule, with an example. */
export const SQL_RULES = [
  "too_long",
  "too_complex",
  "parse_error",
  "empty_statement",
  "multiple_statements",
  "statement_kind_not_allowed",
  "unsupported_statement",
  "attach_detach",
  "pragma",
  "vacuum",
  "maintenance",
  "forbidden_function",
  "schema_table",
  "reserved_name",
  "invalid_name",
  "cross_namespace",
  "unsupported_syntax",
  "unbounded_recursion",
  "unbounded_returning",
  "join_too_large",
] as const;
export type SqlRule = (typeof SQL_RULES)[number];

export interface CheckOptions {
  /** Lowercase [a-z0-9]{1,32}; chosen by the platform, never by the job. */
  tenantKey: string;
  allowedKinds: ReadonlySet<StatementKind>;
  /**
   * Longest statement accepted, in UTF-16 code units; defaults to D1's own limit (100 000). The
   * check costs about 1 ms of CPU per typical statement and up to ~0.5 s at 100 000 characters.
   */
  maxLength?: number;
  /** A query (SELECT, VALUES, compound) returns at most this many rows: a LIMIT SQLite applies (row-cap.ts). */
  maxRows?: number;
  /** The lengths of the values bound to the statement, in order: json_each of one makes at most that many rows (work.ts). */
  paramLengths?: readonly number[];
}

export type SqlVerdict =
  | {
      ok: true;
      /** The statement to run: tenant tables renamed to their physical names, comments removed. */
      sql: string;
      kind: StatementKind;
      /** Logical (job-visible) names of the tables touched, ASCII-lowercased, first use first. */
      tables: string[];
    }
  | { ok: false; rule: SqlRule; message: string };
