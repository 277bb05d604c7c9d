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

export function parseSql(original: string): Program {
  const sql = compactSeparators(original);
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

const QUOTE_CLOSERS: Readonly<Record<string, string>> = { "'": "'", '"': '"', "`": "`", "[": "]" };
/** SQLite's separators between tokens; other whitespace is left for normalizeTokens to refuse. */
const SEPARATOR = /[ \t\r\n]/;

/**
 * The statement with every comment and every run of spaces, tabs and line breaks outside quotes
 * made one space. The parser reads separators without counting them against its budget, so a long
 * run inside failing nested groups was re-read on every backtrack (12 parentheses and 90 000
 * spaces: 27 s). The confined statement drops comments anyway (tokens.ts); what SQLite runs is
 * printed from this text's tree, so the parser and SQLite still read the same characters.
 */
export function compactSeparators(sql: string): string {
  let out = "";
  let at = 0;
  while (at < sql.length) {
    const char = sql[at]!;
    const closer = QUOTE_CLOSERS[char];
    if (closer !== undefined) {
      // A quote runs to its closer; a doubled closer ('', "", ``) is part of it, as in SQLite.
      let end = at + 1;
      for (;;) {
        end = sql.indexOf(closer, end);
        if (end === -1 || closer === "]" || sql[end + 1] !== closer) break;
        end += 2;
      }
      const stop = end === -1 ? sql.length : end + 1;
      out += sql.slice(at, stop);
      at = stop;
    } else if (sql.startsWith("--", at)) {
      const end = sql.indexOf("\n", at);
      at = end === -1 ? sql.length : end + 1;
      out += " ";
    } else if (sql.startsWith("/*", at)) {
      const end = sql.indexOf("*/", at + 2);
      if (end === -1) return refuse("parse_error", "a comment is not closed");
      at = end + 2;
      out += " ";
    } else if (SEPARATOR.test(char)) {
      while (at < sql.length && SEPARATOR.test(sql[at]!)) at++;
      out += " ";
    } else {
      out += char;
      at++;
    }
  }
  return out;
}
