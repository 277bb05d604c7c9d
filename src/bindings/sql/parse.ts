/**
 * The one place that calls the SQL parser (sql-parser-cst, SQLite dialect). It keeps every token,
 * space and comment with its source range, so the rewritten statement is printed back from the tree.
 *
 * Only `?`, `?NNN` and `:name` parameters are accepted: `@name` and `$name` are left out because
 * SQLite reads `$a::b(c)` as one TCL-style variable where the parser sees an expression.
 */
import { parse, type Program } from "sql-parser-cst";
import { refuse } from "./refusal";

/**
 * The parser's work budget: reads of the dialect option per character of the statement, plus a
 * constant. A PEG parser without memoization backtracks exponentially through nested alternatives
 * that fail: `SELECT 1 IN ((((((((((SELECT` (28 characters) takes 0.4 s, each further `(` ≈ × 2, and
 * it runs in the dispatcher, where one call would stall every request. The grammar's predicates read
 * `options.dialect` throughout, so counting those reads counts the parser's steps. Measured: ordinary
 * statements read it 30–50 times per character (a 1 000-row INSERT: 37), the nested failures above
 * 500–11 000 times.
 */
const DIALECT_READS_PER_CHAR = 64;
const DIALECT_READS_BASE = 25_000;

class ParseBudgetSpent extends Error {}

export function parseSql(sql: string): Program {
  const budget = DIALECT_READS_BASE + DIALECT_READS_PER_CHAR * sql.length;
  let reads = 0;
  const options = {
    includeRange: true,
    includeComments: true,
    includeNewlines: true,
    includeSpaces: true,
    paramTypes: ["?", "?nr", ":name"] as ("?" | "?nr" | ":name")[],
    get dialect(): "sqlite" {
      if (++reads > budget) throw new ParseBudgetSpent();
      return "sqlite";
    },
  };
  try {
    return parse(sql, options);
  } catch (error) {
    if (error instanceof ParseBudgetSpent) {
      return refuse("too_complex", "the statement nests too much to be checked (the parser gave up on it)");
    }
    const first = error instanceof Error ? (error.message.split("\n")[0] ?? "") : "";
    // A stack overflow on absurd nesting is as much a refusal as a syntax error.
    return refuse("parse_error", first || "the statement could not be parsed");
  }
}
