/**
 * INSERT, UPDATE and DELETE: the target is always a real table (SQLite never resolves a statement
 * target to a CTE), the rest is queries and expressions. RETURNING (on INSERT … VALUES only) gets
 * the target passed along, because SQLite resolves `target.column` there by the real table name, not
 * by its alias.
 */
import type { DeleteStmt, InsertClause, InsertStmt, Node, UpdateStmt } from "sql-parser-cst";
import type { Confiner, Target } from "./confiner";
import { refuse } from "./refusal";
import { CteScope } from "./scope";

/**
 * RETURNING answers with every row the statement wrote, and D1 hands the answer over whole, before
 * any row cap applies (row-cap.ts caps queries only). Only an INSERT of VALUES (or DEFAULT VALUES)
 * writes as many rows as its text lists; any other statement could return a whole table.
 */
function refuseUnboundedReturning(statement: string): never {
  return refuse(
    "unbounded_returning",
    `RETURNING is allowed on INSERT … VALUES only; ${statement} could return every row of a table (SELECT them instead)`,
  );
}

export function confineInsert(confiner: Confiner, statement: InsertStmt): void {
  let scope = CteScope.EMPTY;
  let target: Target | undefined;
  const fromQuery = statement.clauses.some(
    (clause) => clause.type === "select_stmt" || clause.type === "compound_select_stmt",
  );
  for (const [position, clause] of statement.clauses.entries()) {
    switch (clause.type) {
      case "with_clause":
        scope = leadingWith(confiner, clause, position, scope);
        break;
      case "insert_clause":
        target = insertTarget(confiner, clause, scope);
        break;
      case "select_stmt":
      case "compound_select_stmt":
        confiner.query(clause, scope);
        break;
      case "returning_clause":
        if (fromQuery) refuseUnboundedReturning("INSERT … SELECT");
        confiner.expr(clause, { scope, returning: target });
        break;
      default:
        confiner.expr(clause, { scope });
    }
  }
}

function insertTarget(confiner: Confiner, clause: InsertClause, scope: CteScope): Target {
  if (clause.modifiers.length > 0) refuse("unsupported_syntax", "INSERT modifiers");
  if (clause.columns) confiner.expr(clause.columns, { scope });
  return confiner.target(clause.table, scope);
}

export function confineUpdate(confiner: Confiner, statement: UpdateStmt): void {
  let scope = CteScope.EMPTY;
  for (const [position, clause] of statement.clauses.entries()) {
    switch (clause.type) {
      case "with_clause":
        scope = leadingWith(confiner, clause, position, scope);
        break;
      case "update_clause":
        if (clause.modifiers.length > 0) refuse("unsupported_syntax", "UPDATE modifiers");
        confiner.target(onlyItem(clause.tables.items, "UPDATE"), scope);
        break;
      case "from_clause":
        confiner.tableExpr(clause.expr, scope);
        break;
      case "returning_clause":
        return refuseUnboundedReturning("UPDATE");
      default:
        confiner.expr(clause, { scope });
    }
  }
}

export function confineDelete(confiner: Confiner, statement: DeleteStmt): void {
  let scope = CteScope.EMPTY;
  for (const [position, clause] of statement.clauses.entries()) {
    switch (clause.type) {
      case "with_clause":
        scope = leadingWith(confiner, clause, position, scope);
        break;
      case "delete_clause":
        if (clause.modifiers.length > 0) refuse("unsupported_syntax", "DELETE modifiers");
        confiner.target(onlyItem(clause.tables.items, "DELETE"), scope);
        break;
      case "returning_clause":
        return refuseUnboundedReturning("DELETE");
      case "from_clause":
        // DELETE … USING / a second FROM belong to other dialects.
        return refuse("unsupported_syntax", "DELETE takes a single table");
      default:
        confiner.expr(clause, { scope });
    }
  }
}

function leadingWith(
  confiner: Confiner,
  clause: Parameters<Confiner["withClause"]>[0],
  position: number,
  scope: CteScope,
): CteScope {
  if (position !== 0) refuse("unsupported_syntax", "WITH must come first");
  return confiner.withClause(clause, scope);
}

function onlyItem<T extends Node>(items: T[], statement: string): T {
  const [first] = items;
  if (!first || items.length > 1) refuse("unsupported_syntax", `${statement} takes a single table`);
  return first;
}
