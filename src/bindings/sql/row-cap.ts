/**
 * Caps the rows a query returns in SQLite itself. D1 hands a result over whole, so a cap applied
 * after `.all()` comes after the dispatcher has held every row (a recursive CTE of 1.2 million rows
 * exhausted its heap); and SQLite stops producing rows at a LIMIT, so a join that would run for
 * minutes ends at the cap when nothing sorts or aggregates it first.
 *
 * The LIMIT goes on the last SELECT of the statement, where SQLite reads the LIMIT of the whole
 * query (a compound's too). A LIMIT the job wrote is kept, bounded: `LIMIT x` becomes
 * `LIMIT (SELECT CASE WHEN v < 0 OR v > cap THEN cap ELSE v END FROM (SELECT (x) AS v))`, which
 * names `x` once (it may hold a `?`) and keeps `LIMIT -1`, SQLite's "no limit", at the cap.
 */
import type { Expr, LimitClause, Node, Statement } from "sql-parser-cst";
import { parseSql } from "./parse";
import { childNodes, finalSelect } from "./tree";

const PLACEHOLDER = ":__cordon_limit";

export function capRows(statement: Statement, cap: number): void {
  const final = finalSelect(statement);
  if (!final) return;
  const own = final.limit;
  if (!own) {
    (final.select.clauses as Node[]).push(limitClause(`SELECT 1 LIMIT ${cap}`));
    return;
  }
  const count = own.count;
  if (count === undefined || count.type === "limit_all") {
    own.count = limitClause(`SELECT 1 LIMIT ${cap}`).count;
    return;
  }
  const bounded = limitClause(
    `SELECT 1 LIMIT (SELECT CASE WHEN v < 0 OR v > ${cap} THEN ${cap} ELSE v END FROM (SELECT (${PLACEHOLDER}) AS v))`,
  ).count;
  if (bounded === undefined) throw new Error("the LIMIT template has no count");
  // The spaces around the job's count now surround the bound.
  bounded.leading = count.leading;
  bounded.trailing = count.trailing;
  replacePlaceholder(bounded, { ...count, leading: [], trailing: [] });
  own.count = bounded;
}

function limitClause(sql: string): LimitClause {
  const [statement] = parseSql(sql).statements;
  const clause =
    statement?.type === "select_stmt" ? statement.clauses.find((c) => c.type === "limit_clause") : undefined;
  if (clause?.type !== "limit_clause") throw new Error("the LIMIT template did not parse as one");
  return clause;
}

/** Puts `expr` where the template has its placeholder parameter. */
function replacePlaceholder(template: Node, expr: Expr): void {
  for (const child of childNodes(template)) {
    if (child.type === "paren_expr" && child.expr.type === "parameter" && child.expr.text === PLACEHOLDER) {
      child.expr = expr;
      return;
    }
    replacePlaceholder(child, expr);
  }
}
