/**
 * The functions a job may call: an allow-list, so a function SQLite (or D1) adds later is refused
 * until someone decides it is harmless. README.md explains the choices.
 *
 * Left out on purpose:
 * - load_extension, readfile, writefile, edit, fts3_tokenizer: file system, native code, pointers.
 * - every sqlite_* function (version, compile options, offsets): introspection of the engine.
 * - changes, total_changes, last_insert_rowid: they describe the connection, which tenants share,
 *   so they could leak another tenant's activity. The binding returns these figures itself.
 * - zeroblob: allocates on request and has no use without incremental blob I/O.
 * - match/snippet/highlight/bm25 and other FTS helpers: virtual tables are not allowed anyway.
 */
import type { Node } from "sql-parser-cst";
import { asciiLower } from "./names";
import { refuse } from "./refusal";

const SCALAR_AND_AGGREGATE = [
  // core scalar
  "abs",
  "char",
  "coalesce",
  "concat",
  "concat_ws",
  "format",
  "glob",
  "hex",
  "if",
  "ifnull",
  "iif",
  "instr",
  "length",
  "like",
  "likelihood",
  "likely",
  "lower",
  "ltrim",
  "max",
  "min",
  "nullif",
  "octet_length",
  "printf",
  "quote",
  "random",
  // randomblob is bounded by D1's value size limit and is the usual way to mint ids
  "randomblob",
  "replace",
  "round",
  "rtrim",
  "sign",
  "substr",
  "substring",
  "trim",
  "typeof",
  "unhex",
  "unicode",
  "unlikely",
  "upper",
  // aggregate
  "avg",
  "count",
  "group_concat",
  "string_agg",
  "sum",
  "total",
  // window
  "row_number",
  "rank",
  "dense_rank",
  "percent_rank",
  "cume_dist",
  "ntile",
  "lag",
  "lead",
  "first_value",
  "last_value",
  "nth_value",
  // date and time
  "date",
  "time",
  "datetime",
  "julianday",
  "unixepoch",
  "strftime",
  "timediff",
  // math
  "acos",
  "acosh",
  "asin",
  "asinh",
  "atan",
  "atan2",
  "atanh",
  "ceil",
  "ceiling",
  "cos",
  "cosh",
  "degrees",
  "exp",
  "floor",
  "ln",
  "log",
  "log10",
  "log2",
  "mod",
  "pi",
  "pow",
  "power",
  "radians",
  "sin",
  "sinh",
  "sqrt",
  "tan",
  "tanh",
  "trunc",
  // JSON (text and JSONB forms)
  "json",
  "json_array",
  "json_array_length",
  "json_error_position",
  "json_extract",
  "json_group_array",
  "json_group_object",
  "json_insert",
  "json_object",
  "json_patch",
  "json_pretty",
  "json_quote",
  "json_remove",
  "json_replace",
  "json_set",
  "json_type",
  "json_valid",
  "jsonb",
  "jsonb_array",
  "jsonb_extract",
  "jsonb_group_array",
  "jsonb_group_object",
  "jsonb_insert",
  "jsonb_object",
  "jsonb_patch",
  "jsonb_remove",
  "jsonb_replace",
  "jsonb_set",
] as const;

/** Table-valued functions allowed in FROM (and after IN). */
const TABLE_VALUED = ["json_each", "json_tree"] as const;

const SCALAR_SET: ReadonlySet<string> = new Set(SCALAR_AND_AGGREGATE);
const TABLE_SET: ReadonlySet<string> = new Set(TABLE_VALUED);

export const ALLOWED_FUNCTIONS: readonly string[] = SCALAR_AND_AGGREGATE;
export const ALLOWED_TABLE_FUNCTIONS: readonly string[] = TABLE_VALUED;

export function checkScalarFunction(name: string): void {
  const lower = asciiLower(name);
  if (SCALAR_SET.has(lower)) return;
  if (TABLE_SET.has(lower)) {
    refuse("forbidden_function", `${lower}() is table-valued: use it in FROM`);
  }
  refuse("forbidden_function", `function ${JSON.stringify(name)} is not on the allow-list`);
}

export function checkTableFunction(name: string): void {
  const lower = asciiLower(name);
  if (TABLE_SET.has(lower)) return;
  if (lower.startsWith("pragma_")) {
    refuse("pragma", `${JSON.stringify(name)} is a PRAGMA in table form`);
  }
  refuse("forbidden_function", `table-valued function ${JSON.stringify(name)} is not allowed`);
}

/** The widest `printf`/`format` field and the largest `randomblob` a statement may ask for. */
export const MAX_FORMAT_WIDTH = 1_000;
export const MAX_RANDOMBLOB_BYTES = 1_024;

/**
 * Functions whose arguments say how much they make: `printf('%.*c', 1000000, 'a')` builds a megabyte
 * out of nothing, and per row, or fed to a quadratic function (`trim`, `instr`, `replace`), it costs
 * minutes of D1's one thread. Their sizes must be written out, and small.
 */
export function checkSizedCall(name: string, firstArg: Node | undefined): void {
  const lower = asciiLower(name);
  if (lower === "printf" || lower === "format") {
    if (firstArg?.type !== "string_literal") {
      refuse("forbidden_function", `${lower}() takes its format as a string written in the statement`);
    }
    for (const [, width, precision] of firstArg.value.matchAll(/%[-+ 0#,!]*(\*|\d+)?(?:\.(\*|\d*))?/g)) {
      for (const size of [width, precision]) {
        if (size === "*" || Number(size ?? 0) > MAX_FORMAT_WIDTH) {
          refuse("forbidden_function", `${lower}() widths and precisions are numbers up to ${MAX_FORMAT_WIDTH}, not *`);
        }
      }
    }
  }
  if (lower === "randomblob") {
    const bytes = firstArg?.type === "number_literal" ? firstArg.value : NaN;
    if (!(Number.isInteger(bytes) && bytes <= MAX_RANDOMBLOB_BYTES)) {
      refuse("forbidden_function", `randomblob() takes a number of bytes written out, up to ${MAX_RANDOMBLOB_BYTES}`);
    }
  }
}
