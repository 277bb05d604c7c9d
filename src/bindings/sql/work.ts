/**
 * A bound on the rows a statement can make SQLite visit without any table holding them. A recursive
 * CTE is bounded (LIMIT ≤ 10 000), but joined with itself it is not: `SELECT count(*) FROM c, c, c`
 * visits 10¹² rows, needs no table (a read-only job can send it), holds D1 for its 30 s in production
 * (one query at a time per database: every tenant waits) and, locally, the whole runtime, whose D1 runs
 * on the dispatcher's thread.
 *
 * The estimate, per select core: the product of its row sources (a CTE: the rows its body can make; a
 * CTE's own name inside its recursive step: its LIMIT, the times the step runs; json_each/json_tree:
 * JSON_TABLE_ROWS; a subquery: its estimate; a table: 1, since its rows are the tenant's own data and
 * bounded by its storage, not here), times every subquery in its expressions (as if each ran per row).
 * Compound parts add up. Over MAX_WORK the statement is refused (`join_too_large`). The estimate only
 * ever errs high: a query SQLite would run cheaply (an uncorrelated subquery it runs once) can be
 * refused, never the other way round, for the sources it counts.
 */
import { refuse } from "./refusal";

/** About 0.2 s of SQLite here (a count over 64 million joined CTE rows took 1.4 s). */
export const MAX_WORK = 10_000_000;
/** What one json_each/json_tree is counted as: its argument (≤ 1 MiB, a call's size) holds at most ~500 000 values. */
export const JSON_TABLE_ROWS = 100_000;

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
