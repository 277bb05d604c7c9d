/**
 * The one place that calls the SQL parser (sql-parser-cst, SQLite dialect). It keeps every token,
 * space and comment with its source range, so the rewritten statement is printed back from the tree.
 *
 * Only `?`, `?NNN` and `:name` parameters are accepted: `@name` and `$name` are left out because
 * SQLite reads `$a::b(c)` as one TCL-style variable where the parser sees an expression.
 */
import { parse, type Program } from "sql-parser-cst";
import { refuse } from "./refusal";

export function parseSql(sql: string): Program {
  try {
    return parse(sql, {
      dialect: "sqlite",
      includeRange: true,
      includeComments: true,
      includeNewlines: true,
      includeSpaces: true,
      paramTypes: ["?", "?nr", ":name"],
    });
  } catch (error) {
    const first = error instanceof Error ? (error.message.split("\n")[0] ?? "") : "";
    // A stack overflow on absurd nesting is as much a refusal as a syntax error.
    return refuse("parse_error", first || "the statement could not be parsed");
  }
}
