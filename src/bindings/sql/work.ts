/**
 * A bound on the rows a statement can make SQLite visit without any table holding them. A recursive
 * CTE is bounded (LIMIT ≤ 10 000), but joined with itself it is not: `SELECT count(*) FROM c, c, c`
 * visits 10¹² rows, needs no table (a read-only job can send it), holds D1 for its 30 s in production
 * (one query at a time per database: every tenant waits) and, locally, the whole runtime, whose D1 runs
 * on the dispatcher's thread.
 *
 * The estimate, per select core: the product of its row sources (a CTE: the rows its body can make; a
 * CTE's own name inside its recursive step: its LIMIT, the times the step runs; json_each/json_tree:
 * see jsonTableRows; a subquery: its estimate; a table: 1, since its rows are the tenant's own data and
 * bounded by its storage, not here), times every subquery in its expressions (as if each ran per row).
 * Compound parts add up. Over MAX_WORK the statement is refused (`join_too_large`). The estimate only
 * ever errs high: a query SQLite would run cheaply (an uncorrelated subquery it runs once) can be
 * refused, never the other way round, for the sources it counts.
 */
import type { Node } from "sql-parser-cst";
import { refuse } from "./refusal";
import { childNodes } from "./tree";

/** About 0.2 s of SQLite here (a count over 64 million joined CTE rows took 1.4 s). */
export const MAX_WORK = 10_000_000;
/** json_each/json_tree of a column: the tenant's own data, like a table's rows, counted as this. */
export const JSON_COLUMN_ROWS = 100_000;
/** json_each/json_tree of anything computed: a 2 MB JSONB value (D1's largest) holds 2 million. */
export const JSON_COMPUTED_ROWS = 2_000_000;

/**
 * The rows json_each/json_tree can make of its argument: a bound parameter or a string written in
 * the statement makes at most one per character (every value takes one or more); a column, see
 * JSON_COLUMN_ROWS; anything else, JSON_COMPUTED_ROWS. `parameterRows` holds the parameters' lengths
 * (see parameterLengths), when the statement comes with its values.
 */
export function jsonTableRows(argument: Node | undefined, parameterRows: ReadonlyMap<Node, number>): number {
  switch (argument?.type) {
    case "parameter":
      return parameterRows.get(argument) ?? JSON_COMPUTED_ROWS;
    case "string_literal":
      return argument.value.length;
    case "identifier":
    case "member_expr":
      return JSON_COLUMN_ROWS;
    default:
      return JSON_COMPUTED_ROWS;
  }
}

/**
 * Each parameter node's value length, given the values' lengths in binding order. SQLite numbers a
 * `?` one past the largest number so far, a `?N` as N, and a `:name` at its first use; the parser's
 * ranges give the order they are written in.
 */
export function parameterLengths(statement: Node, lengths: readonly number[]): Map<Node, number> {
  const found: Node[] = [];
  const visit = (node: Node): void => {
    if (node.type === "parameter") found.push(node);
    for (const child of childNodes(node)) visit(child);
  };
  visit(statement);
  found.sort((a, b) => (a.range?.[0] ?? 0) - (b.range?.[0] ?? 0));
  const byNode = new Map<Node, number>();
  const named = new Map<string, number>();
  let largest = 0;
  for (const node of found) {
    if (node.type !== "parameter") continue;
    let index: number;
    if (node.text === "?") index = ++largest;
    else if (/^\?\d+$/.test(node.text)) index = Number(node.text.slice(1));
    else index = named.get(node.text) ?? largest + 1;
    if (node.text.startsWith(":")) named.set(node.text, index);
    largest = Math.max(largest, index);
    const length = lengths[index - 1];
    if (length !== undefined) byNode.set(node, length);
  }
  return byNode;
}

export class WorkMeter {
  /** The statement's own product first, then the select cores being walked, innermost last. */
  readonly #products: number[] = [1];

  /** A row source of the core being walked (or of the statement, outside any core). */
  multiply(rows: number): void {
    const last = this.#products.length - 1;
    this.#products[last] = (this.#products[last] ?? 1) * Math.max(1, rows);
  }

  enterCore(): void {
    this.#products.push(1);
  }

  leaveCore(): number {
    return this.#products.pop() ?? 1;
  }

  /** Refuses the statement when its estimate is over MAX_WORK. */
  check(): void {
    const work = this.#products[0] ?? 1;
    if (work > MAX_WORK) {
      refuse(
        "join_too_large",
        `the statement may visit about ${work.toExponential(1)} rows of CTEs and table-valued functions (joined, their rows multiply); the limit is ${MAX_WORK}`,
      );
    }
  }
}
