/**
 * CREATE TABLE / CREATE INDEX / DROP TABLE / DROP INDEX / ALTER TABLE. Each handler reads the
 * fields SQLite has and refuses any other populated field, so syntax borrowed from another dialect
 * cannot slip a name past the rename.
 */
import type {
  AlterTableStmt,
  CreateIndexStmt,
  CreateTableStmt,
  DropIndexStmt,
  DropTableStmt,
  Node,
} from "sql-parser-cst";
import { schemaQualified, type Confiner } from "./confiner";
import { refuse } from "./refusal";
import { CteScope } from "./scope";
import { childNodes } from "./tree";

const scope = CteScope.EMPTY;

/** Every child that is not a plain keyword must be one the handler dealt with. */
function onlyHandled(node: Node, handled: ReadonlyArray<Node | undefined>): void {
  for (const child of childNodes(node)) {
    if (child.type !== "keyword" && !handled.includes(child)) {
      refuse("unsupported_syntax", `${child.type.replaceAll("_", " ")} is not supported here`);
    }
  }
}

function tableName(confiner: Confiner, node: Node): void {
  if (node.type === "member_expr") schemaQualified("table");
  if (node.type !== "identifier") refuse("unsupported_syntax", "expected a table name");
  confiner.table(node, scope, { cte: false, alias: false });
}

export function confineCreateTable(confiner: Confiner, statement: CreateTableStmt): void {
  if (statement.orReplaceKw) refuse("unsupported_syntax", "CREATE OR REPLACE");
  if (statement.kind) refuse("unsupported_syntax", "TEMP and other table kinds are not available");
  tableName(confiner, statement.name);
  if (statement.columns) confiner.expr(statement.columns, { scope });
  if (statement.options) confiner.expr(statement.options, { scope });
  for (const clause of statement.clauses) {
    if (clause.type !== "as_clause") refuse("unsupported_syntax", `${clause.type} in CREATE TABLE`);
    const query = clause.expr;
    if (query.type !== "select_stmt" && query.type !== "compound_select_stmt") {
      refuse("unsupported_syntax", "CREATE TABLE … AS expects a SELECT");
    }
    confiner.query(query, scope);
  }
  onlyHandled(statement, [statement.name, statement.columns, statement.options, ...statement.clauses]);
}

export function confineCreateIndex(confiner: Confiner, statement: CreateIndexStmt): void {
  if (statement.orReplaceKw || statement.concurrentlyKw) refuse("unsupported_syntax", "index options");
  if (statement.indexTypeKw && statement.indexTypeKw.name !== "UNIQUE") {
    refuse("unsupported_syntax", `${statement.indexTypeKw.name} indexes`);
  }
  if (!statement.name) refuse("unsupported_syntax", "an index needs a name");
  confiner.index(statement.name);
  tableName(confiner, statement.table);
  confiner.expr(statement.columns, { scope });
  for (const clause of statement.clauses) confiner.expr(clause, { scope });
  onlyHandled(statement, [statement.name, statement.table, statement.columns, ...statement.clauses]);
}

export function confineDropTable(confiner: Confiner, statement: DropTableStmt): void {
  if (statement.kind || statement.behaviorKw) refuse("unsupported_syntax", "DROP TABLE options");
  const [table, ...more] = statement.tables.items;
  if (!table || more.length > 0) refuse("unsupported_syntax", "DROP TABLE takes one table");
  tableName(confiner, table);
  onlyHandled(statement, [statement.tables]);
}

export function confineDropIndex(confiner: Confiner, statement: DropIndexStmt): void {
  if (statement.table || statement.behaviorKw || statement.concurrentlyKw || statement.indexTypeKw) {
    refuse("unsupported_syntax", "DROP INDEX options");
  }
  const [index, ...more] = statement.indexes.items;
  if (!index || more.length > 0) refuse("unsupported_syntax", "DROP INDEX takes one index");
  confiner.index(index);
  onlyHandled(statement, [statement.indexes]);
}

export function confineAlterTable(confiner: Confiner, statement: AlterTableStmt): void {
  if (statement.ifExistsKw) refuse("unsupported_syntax", "ALTER TABLE IF EXISTS");
  tableName(confiner, statement.table);
  const [action, ...more] = statement.actions.items;
  if (!action || more.length > 0) refuse("unsupported_syntax", "ALTER TABLE takes one action");
  switch (action.type) {
    case "alter_action_rename":
      tableName(confiner, action.newName);
      break;
    case "alter_action_rename_column":
    case "alter_action_drop_column":
      break;
    case "alter_action_add_column":
      confiner.expr(action.column, { scope });
      break;
    default:
      refuse("unsupported_syntax", `${action.type.replaceAll("_", " ")} is not supported`);
  }
  onlyHandled(statement, [statement.table, statement.actions]);
}
