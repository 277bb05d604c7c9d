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

/**
 * Parses one statement within the budget. The parser reads the characters of a token and of a run
 * of separators without counting against it, and re-reads them on every backtrack, so both are made
 * short first: comments and separator runs become one space (`compactStatement`), and a statement
 * with a long token is first parsed as its skeleton, every long token replaced by a short one of the
 * same kind. The grammar's choices do not depend on a token's length, so a skeleton that parses
 * within the budget has no exponential backtracking left for the long tokens to multiply (12 failing
 * parentheses around one 99 000-digit number took 147 s; its skeleton is refused at once).
 */
export function parseSql(original: string): Program {
  const { text, skeleton } = compactStatement(original);
  if (skeleton !== text) parseWithinBudget(skeleton);
  return parseWithinBudget(text);
}

function parseWithinBudget(sql: string): Program {
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

/** Tokens longer than this are shortened in the skeleton: longer than any keyword (CURRENT_TIMESTAMP: 17). */
const LONG_TOKEN_CHARS = 32;
/** A run of characters that SQLite reads as one word (identifier, keyword, number). */
const WORD_CHAR = /[A-Za-z0-9_$\u0080-\uffff]/;

const QUOTE_CLOSERS: Readonly<Record<string, string>> = { "'": "'", '"': '"', "`": "`", "[": "]" };
/** SQLite's separators between tokens; other whitespace is left for normalizeTokens to refuse. */
const SEPARATOR = /[ \t\r\n]/;

/**
 * The statement with every comment and every run of spaces, tabs and line breaks outside quotes
 * made one space (`text`), and the same with every quoted token or word longer than
 * LONG_TOKEN_CHARS shortened to one of its kind (`skeleton`, only ever parsed, never run). The
 * confined statement drops comments anyway (tokens.ts); what SQLite runs is printed from `text`'s
 * tree, so the parser and SQLite still read the same characters.
 */
function compactStatement(sql: string): { text: string; skeleton: string } {
  let text = "";
  let skeleton = "";
  const both = (piece: string, short: string = piece) => {
    text += piece;
    skeleton += short;
  };
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
      const quoted = sql.slice(at, stop);
      // '00' is a string and, after x, a blob: the skeleton keeps either.
      const short = char === "'" ? "'00'" : `${char}q${closer}`;
      both(quoted, quoted.length > LONG_TOKEN_CHARS && end !== -1 ? short : quoted);
      at = stop;
    } else if (sql.startsWith("--", at)) {
      const end = sql.indexOf("\n", at);
      at = end === -1 ? sql.length : end + 1;
      both(" ");
    } else if (sql.startsWith("/*", at)) {
      const end = sql.indexOf("*/", at + 2);
      if (end === -1) return refuse("parse_error", "a comment is not closed");
      at = end + 2;
      both(" ");
    } else if (SEPARATOR.test(char)) {
      while (at < sql.length && SEPARATOR.test(sql[at]!)) at++;
      both(" ");
    } else if (WORD_CHAR.test(char)) {
      let end = at + 1;
      while (end < sql.length && WORD_CHAR.test(sql[end]!)) end++;
      const word = sql.slice(at, end);
      // No keyword is this long: a long word is a name or a number, and stays one in the skeleton.
      both(word, word.length > LONG_TOKEN_CHARS ? (/^[0-9]/.test(word) ? "0" : "w") : word);
      at = end;
    } else {
      both(char);
      at++;
    }
  }
  return { text, skeleton };
}
