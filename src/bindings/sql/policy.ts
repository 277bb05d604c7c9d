/**
 * checkStatement: the SQL policy of the DB binding. Pure (no I/O): parses one statement, decides on
 * the tree, and returns either the statement confined to the tenant's tables or the rule it broke.
 *
 * Order of the checks: size, parse, one statement, statements never allowed (ATTACH, PRAGMA, …),
 * the caller's allowed kinds, then the walk that checks names and functions and renames tables.
 */
import { show, type Statement } from "sql-parser-cst";
import { Confiner } from "./confiner";
import { confineAlterTable, confineCreateIndex, confineCreateTable, confineDropIndex, confineDropTable } from "./ddl";
import { confineDelete, confineInsert, confineUpdate } from "./dml";
import { assertTenantKey } from "./names";
import { parseSql } from "./parse";
import { refuse, SqlRefusal } from "./refusal";
import { capRows } from "./row-cap";
import { CteScope } from "./scope";
import { singleStatement, statementKind } from "./statements";
import { normalizeTokens } from "./tokens";
import type { CheckOptions, SqlVerdict } from "./types";
import { parameterLengths } from "./work";

/** D1's own limit on the length of one statement: the default for `maxLength`. */
export const MAX_SQL_LENGTH = 100_000;

export function checkStatement(sql: string, options: CheckOptions): SqlVerdict {
  assertTenantKey(options.tenantKey);
  try {
    return confine(sql, options);
  } catch (error) {
    if (error instanceof SqlRefusal) return { ok: false, rule: error.rule, message: error.message };
    // Deep nesting can overflow the stack in the walk too; whatever went wrong, nothing runs.
    const message =
      error instanceof RangeError
        ? "the statement is nested too deeply to check"
        : "the statement could not be checked";
    return { ok: false, rule: "parse_error", message };
  }
}

function confine(sql: string, options: CheckOptions): SqlVerdict {
  const maxLength = options.maxLength ?? MAX_SQL_LENGTH;
  if (sql.length > maxLength) refuse("too_long", `statements are limited to ${maxLength} characters`);
  const statement = singleStatement(parseSql(sql));
  const kind = statementKind(statement);
  if (!options.allowedKinds.has(kind)) {
    refuse("statement_kind_not_allowed", `${kind} statements are not allowed here`);
  }
  normalizeTokens(statement);
  const parameterRows = options.paramLengths ? parameterLengths(statement, options.paramLengths) : undefined;
  const confiner = new Confiner(options.tenantKey, parameterRows);
  confineByKind(confiner, statement);
  confiner.work.check();
  if (
    options.maxRows !== undefined &&
    (statement.type === "select_stmt" || statement.type === "compound_select_stmt")
  ) {
    capRows(statement, options.maxRows);
  }
  return { ok: true, sql: show(statement).trim(), kind, tables: [...confiner.tables] };
}

function confineByKind(confiner: Confiner, statement: Statement): void {
  switch (statement.type) {
    case "select_stmt":
    case "compound_select_stmt":
      return confiner.query(statement, CteScope.EMPTY);
    case "insert_stmt":
      return confineInsert(confiner, statement);
    case "update_stmt":
      return confineUpdate(confiner, statement);
    case "delete_stmt":
      return confineDelete(confiner, statement);
    case "create_table_stmt":
      return confineCreateTable(confiner, statement);
    case "create_index_stmt":
      return confineCreateIndex(confiner, statement);
    case "drop_table_stmt":
      return confineDropTable(confiner, statement);
    case "drop_index_stmt":
      return confineDropIndex(confiner, statement);
    case "alter_table_stmt":
      return confineAlterTable(confiner, statement);
    default:
      return refuse("unsupported_statement", `${statement.type} is not supported`);
  }
}
