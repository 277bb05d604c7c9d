/**
 * Picks the single statement out of a parsed program and names its kind, refusing up front the
 * statements no job may ever run, whatever kinds it is allowed.
 */
import type { Program, Statement } from "sql-parser-cst";
import { refuse } from "./refusal";
import type { StatementKind } from "./types";

/** Exactly one statement; empty ones (stray semicolons) around it are dropped. */
export function singleStatement(program: Program): Statement {
  const statements = program.statements.filter((statement) => statement.type !== "empty");
  if (statements.length > 1) {
    refuse("multiple_statements", `expected one statement, found ${statements.length}`);
  }
  const [statement] = statements;
  if (!statement) return refuse("empty_statement", "there is no statement to run");
  return statement;
}

export function statementKind(statement: Statement): StatementKind {
  switch (statement.type) {
    case "select_stmt":
    case "compound_select_stmt":
      return "select";
    case "insert_stmt":
      return "insert";
    case "update_stmt":
      return "update";
    case "delete_stmt":
      return "delete";
    case "create_table_stmt":
      if (statement.kind?.kindKw && !Array.isArray(statement.kind.kindKw)) {
        if (statement.kind.kindKw.name === "VIRTUAL") {
          refuse("unsupported_statement", "virtual tables (FTS, R*Tree, …) are not available");
        }
      }
      return "create_table";
    case "create_index_stmt":
      return "create_index";
    case "drop_table_stmt":
      return "drop_table";
    case "drop_index_stmt":
      return "drop_index";
    case "alter_table_stmt":
      return "alter_table";
    case "attach_database_stmt":
    case "detach_database_stmt":
      return refuse("attach_detach", "ATTACH and DETACH reach other database files");
    case "pragma_stmt":
      return refuse("pragma", "PRAGMA reads or changes engine settings");
    case "vacuum_stmt":
      return refuse("vacuum", "VACUUM (and VACUUM INTO a file) is run by the platform only");
    case "reindex_stmt":
    case "analyze_stmt":
      return refuse("maintenance", "REINDEX and ANALYZE are run by the platform only");
    default:
      return refuse(
        "unsupported_statement",
        `${describe(statement.type)} statements are not supported (triggers, views, transactions and EXPLAIN never are)`,
      );
  }
}

function describe(type: string): string {
  return type
    .replace(/_stmt$/, "")
    .replaceAll("_", " ")
    .toUpperCase();
}
