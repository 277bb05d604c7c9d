/**
 * Walks a statement's tree and confines it to one tenant: every name that SQLite will resolve to a
 * table or an index is checked and renamed to the tenant's physical name, every function call is
 * checked against the allow-list.
 *
 * Fail-closed: table names are only ever expected in the places handled here (FROM and JOIN, the
 * right side of IN, statement targets, REFERENCES). Any other node type is walked as an expression
 * only if it is listed in EXPRESSION_NODES, which holds no node that can name a table; anything
 * else, such as a clause from another dialect, refuses the statement.
 */
import type {
  Alias,
  CompoundSelectStmt,
  FuncCall,
  Identifier,
  IndexedTable,
  MemberExpr,
  Node,
  NotIndexedTable,
  ReferencesSpecification,
  SelectStmt,
  ValuesClause,
  WithClause,
} from "sql-parser-cst";
import { checkScalarFunction, checkSizedCall, checkTableFunction } from "./functions";
import { asciiLower, checkLogicalName, physicalName, quoteIdentifier } from "./names";
import { refuse } from "./refusal";
import { CteScope } from "./scope";
import { childNodes, finalSelect } from "./tree";
import { jsonTableRows, WorkMeter } from "./work";

/** The target of INSERT/UPDATE/DELETE, for RETURNING, where SQLite resolves `table.column` by the real name. */
export interface Target {
  lower: string;
  physical: string;
}

export interface ExprContext {
  scope: CteScope;
  returning?: Target;
}

type Query = SelectStmt | CompoundSelectStmt;

/** Node types that hold only expressions, column names or keywords, never a table name. */
const EXPRESSION_NODES: ReadonlySet<string> = new Set([
  "alias",
  "all_columns",
  "between_expr",
  "binary_expr",
  "blob_literal",
  "boolean_literal",
  "case_else",
  "case_expr",
  "case_when",
  "cast_arg",
  "cast_expr",
  "column_assignment",
  "column_definition",
  "constraint",
  "constraint_auto_increment",
  "constraint_check",
  "constraint_collate",
  "constraint_default",
  "constraint_foreign_key",
  "constraint_generated",
  "constraint_modifier",
  "constraint_name",
  "constraint_not_null",
  "constraint_null",
  "constraint_primary_key",
  "constraint_unique",
  "data_type_name",
  "default",
  "default_values",
  "filter_arg",
  "frame_between",
  "frame_bound_current_row",
  "frame_bound_following",
  "frame_bound_preceding",
  "frame_clause",
  "frame_exclusion",
  "frame_unbounded",
  "func_args",
  "group_by_clause",
  "having_clause",
  "identifier",
  "index_specification",
  "join_on_specification",
  "join_using_specification",
  "keyword",
  "limit_clause",
  "list_expr",
  "modified_data_type",
  "named_window",
  "null_literal",
  "number_literal",
  "on_conflict_clause",
  "or_alternate_action",
  "order_by_clause",
  "over_arg",
  "parameter",
  "paren_expr",
  "partition_by_clause",
  "postfix_op_expr",
  "prefix_op_expr",
  "referential_action",
  "referential_match",
  "returning_clause",
  "select_all",
  "select_clause",
  "select_distinct",
  "set_clause",
  "sort_direction_asc",
  "sort_direction_desc",
  "sort_specification",
  "string_literal",
  "table_option",
  "upsert_action_nothing",
  "upsert_action_update",
  "upsert_clause",
  "values_clause",
  "where_clause",
  "window_clause",
  "window_definition",
]);

function describe(type: string): string {
  return type.replaceAll("_", " ");
}

function isQuery(node: Node): node is Query {
  return node.type === "select_stmt" || node.type === "compound_select_stmt";
}

function isInOperator(operator: unknown): boolean {
  const last: unknown = Array.isArray(operator) ? operator[operator.length - 1] : operator;
  return typeof last === "object" && last !== null && (last as { name?: unknown }).name === "IN";
}

/** The WITH written first in a query, which SQLite applies to every part of a compound SELECT. */
function leadingWith(query: Node): WithClause | undefined {
  if (query.type === "compound_select_stmt") return leadingWith(query.left);
  if (query.type === "select_stmt") {
    const first = query.clauses[0];
    return first?.type === "with_clause" ? first : undefined;
  }
  return undefined;
}

export function schemaQualified(what: string): never {
  return refuse("cross_namespace", `${what}: schema-qualified names (main.x, temp.x) are not allowed`);
}

export class Confiner {
  /** Logical names of the tables touched, ASCII-lowercased, in order of first use. */
  readonly tables = new Set<string>();
  /** The rows the statement can visit without a table holding them (work.ts). */
  readonly work = new WorkMeter();
  /**
   * The CTEs whose bodies are being walked (innermost last): the scope of the WITH that defines each,
   * whether it named itself, and the LIMIT that bounds its recursion (NaN: none, which
   * requireBoundedRecursion refuses).
   */
  readonly #cteBodies: { name: string; scope: CteScope; recursive: boolean; limit: number }[] = [];
  /** The rows each CTE walked so far can make, by the scope of its WITH and its lowercase name. */
  readonly #cteRows = new Map<CteScope, Map<string, number>>();

  constructor(
    private readonly tenantKey: string,
    /** The length of each parameter's value, where the statement came with its values (work.ts). */
    private readonly parameterRows: ReadonlyMap<Node, number> = new Map(),
  ) {}

  // ---- names -------------------------------------------------------------------------------

  /**
   * A name in a table position. `cte`: SQLite would resolve it to a CTE of that name first.
   * `alias`: keep the job's name usable as a qualifier (`users.id`) by aliasing the physical table.
   */
  table(name: Identifier, scope: CteScope, options: { cte: boolean; alias: boolean }): Target {
    const lower = asciiLower(name.name);
    const physical = quoteIdentifier(physicalName(this.tenantKey, name.name));
    const definer = options.cte ? scope.definer(name.name) : undefined;
    if (definer) {
      this.work.multiply(this.#cteRowsOf(definer, lower));
      return { lower, physical };
    }
    checkLogicalName(name.name, "table");
    this.tables.add(lower);
    name.text = options.alias ? `${physical} AS ${quoteIdentifier(name.name)}` : physical;
    return { lower, physical };
  }

  /**
   * The rows a reference to a CTE stands for: in its own recursive step, its LIMIT (the times the
   * step runs); elsewhere, what its body can make. A CTE written later in the same WITH is not known
   * yet (SQLite allows it, but its rows could not be counted here), so it is refused.
   */
  #cteRowsOf(definer: CteScope, lower: string): number {
    const own = this.#cteBodies.find((body) => body.scope === definer && body.name === lower);
    if (own) {
      own.recursive = true;
      return Number.isNaN(own.limit) ? MAX_RECURSIVE_ROWS : own.limit;
    }
    const rows = this.#cteRows.get(definer)?.get(lower);
    if (rows === undefined) {
      refuse("unsupported_syntax", `a CTE can use only the CTEs written before it in its WITH (${lower} comes later)`);
    }
    return rows;
  }

  /** Index names share SQLite's namespace with tables, so they get the same prefix. */
  index(name: Node): void {
    if (name.type === "member_expr") schemaQualified("index");
    if (name.type !== "identifier") refuse("unsupported_syntax", `${describe(name.type)} as an index name`);
    checkLogicalName(name.name, "index");
    name.text = quoteIdentifier(physicalName(this.tenantKey, name.name));
  }

  /** A table named as the target of a statement: never a CTE in SQLite. */
  target(node: Node, scope: CteScope): Target {
    switch (node.type) {
      case "identifier":
        return this.table(node, scope, { cte: false, alias: true });
      case "alias":
        return this.table(this.aliasedName(node), scope, { cte: false, alias: false });
      case "indexed_table":
      case "not_indexed_table":
        return this.hintedTable(node, scope);
      case "member_expr":
        return schemaQualified("table");
      default:
        return refuse("unsupported_syntax", `${describe(node.type)} as a statement target`);
    }
  }

  private aliasedName(alias: Alias): Identifier {
    if (alias.columnAliases) refuse("unsupported_syntax", "column aliases on a table");
    if (alias.expr.type === "member_expr") schemaQualified("table");
    if (alias.expr.type !== "identifier") {
      refuse("unsupported_syntax", `${describe(alias.expr.type)} cannot be aliased here`);
    }
    return alias.expr;
  }

  /** `t INDEXED BY i` / `t NOT INDEXED`: always a table (SQLite refuses the hint on a CTE). */
  private hintedTable(node: IndexedTable | NotIndexedTable, scope: CteScope): Target {
    const target =
      node.table.type === "alias"
        ? this.table(this.aliasedName(node.table), scope, { cte: false, alias: false })
        : node.table.type === "identifier"
          ? this.table(node.table, scope, { cte: false, alias: true })
          : schemaQualified("table");
    if (node.type === "indexed_table") this.index(node.index);
    return target;
  }

  // ---- queries -----------------------------------------------------------------------------

  /** A query where its rows are read: counted as a row source of the core (or statement) around it. */
  query(query: Query, outer: CteScope): void {
    this.work.multiply(this.#queryWork(query, outer));
  }

  /** Walks a query and answers the rows it can visit (work.ts). */
  #queryWork(query: Query, outer: CteScope): number {
    const first = leadingWith(query);
    const scope = first ? this.withClause(first, outer) : outer;
    return this.queryBody(query, scope, first);
  }

  private queryBody(node: Node, scope: CteScope, hoisted: WithClause | undefined): number {
    if (node.type === "compound_select_stmt") {
      return this.queryBody(node.left, scope, hoisted) + this.queryBody(node.right, scope, hoisted);
    }
    if (node.type === "paren_expr") {
      if (!isQuery(node.expr)) refuse("unsupported_syntax", "expected a SELECT in parentheses");
      return this.#queryWork(node.expr, scope);
    }
    if (node.type !== "select_stmt") {
      refuse("unsupported_syntax", `${describe(node.type)} in a compound SELECT`);
    }
    this.work.enterCore();
    this.selectCore(node, scope, hoisted);
    return this.work.leaveCore();
  }

  private selectCore(node: SelectStmt, scope: CteScope, hoisted: WithClause | undefined): void {
    let inner = scope;
    for (const [position, clause] of node.clauses.entries()) {
      if (clause.type === "with_clause") {
        if (clause === hoisted) continue;
        if (position !== 0) refuse("unsupported_syntax", "WITH must come first");
        inner = this.withClause(clause, inner);
      } else if (clause.type === "from_clause") {
        if (clause.fromKw.name !== "FROM") refuse("unsupported_syntax", "expected FROM");
        this.tableExpr(clause.expr, inner);
      } else {
        this.work.multiply(valuesRows(clause));
        this.expr(clause, { scope: inner });
      }
    }
  }

  withClause(clause: WithClause, outer: CteScope): CteScope {
    const names = new Set<string>();
    for (const cte of clause.tables.items) {
      checkLogicalName(cte.table.name, "cte");
      names.add(asciiLower(cte.table.name));
    }
    const scope = outer.with(names);
    const rows = new Map<string, number>();
    this.#cteRows.set(scope, rows);
    for (const cte of clause.tables.items) {
      if (cte.search || cte.cycle) refuse("unsupported_syntax", "SEARCH and CYCLE clauses");
      if (cte.columns) this.expr(cte.columns, { scope });
      const body = cte.expr.expr;
      if (!isQuery(body)) refuse("unsupported_syntax", "a CTE must be a SELECT");
      const walked = { name: asciiLower(cte.table.name), scope, recursive: false, limit: recursionBound(body) };
      this.#cteBodies.push(walked);
      const made = this.#queryWork(body, scope);
      this.#cteBodies.pop();
      if (walked.recursive) requireBoundedRecursion(body);
      rows.set(walked.name, Math.max(made, rows.get(walked.name) ?? 0));
    }
    return scope;
  }

  // ---- FROM --------------------------------------------------------------------------------

  tableExpr(node: Node, scope: CteScope): void {
    switch (node.type) {
      case "identifier":
        this.table(node, scope, { cte: true, alias: true });
        return;
      case "alias":
        this.aliasedTable(node, scope);
        return;
      case "join_expr":
        this.tableExpr(node.left, scope);
        this.tableExpr(node.right, scope);
        if (node.specification) this.expr(node.specification, { scope });
        return;
      case "indexed_table":
      case "not_indexed_table":
        this.hintedTable(node, scope);
        return;
      case "func_call":
        this.tableFunction(node, scope);
        return;
      case "paren_expr":
        if (isQuery(node.expr)) this.query(node.expr, scope);
        else this.tableExpr(node.expr, scope);
        return;
      case "member_expr":
        schemaQualified("table");
        return;
      default:
        refuse("unsupported_syntax", `${describe(node.type)} is not supported in FROM`);
    }
  }

  private aliasedTable(alias: Alias, scope: CteScope): void {
    if (alias.columnAliases) refuse("unsupported_syntax", "column aliases on a table");
    const inner = alias.expr;
    if (inner.type === "identifier") this.table(inner, scope, { cte: true, alias: false });
    else if (inner.type === "func_call") this.tableFunction(inner, scope);
    else if (inner.type === "paren_expr" && isQuery(inner.expr)) this.query(inner.expr, scope);
    else if (inner.type === "member_expr") schemaQualified("table");
    else refuse("unsupported_syntax", `${describe(inner.type)} cannot be aliased in FROM`);
  }

  private tableFunction(call: FuncCall, scope: CteScope): void {
    if (call.name.type !== "identifier") refuse("unsupported_syntax", "qualified function name");
    checkTableFunction(call.name.name);
    if (call.filter || call.over) refuse("unsupported_syntax", "FILTER/OVER on a table-valued function");
    this.work.multiply(jsonTableRows(call.args?.expr.args.items[0], this.parameterRows));
    if (call.args) this.expr(call.args, { scope });
  }

  // ---- expressions -------------------------------------------------------------------------

  expr(node: Node, context: ExprContext): void {
    switch (node.type) {
      case "select_stmt":
      case "compound_select_stmt":
        // A subquery has its own FROM: RETURNING's special qualifier does not reach into it.
        this.query(node, context.scope);
        return;
      case "func_call":
        this.scalarCall(node, context);
        return;
      case "member_expr":
        this.columnRef(node, context);
        return;
      case "references_specification":
        this.references(node, context);
        return;
      case "frame_exclusion":
        // SQLite computes a frame with EXCLUDE row by row: over n rows, n² steps.
        return refuse("unsupported_syntax", "EXCLUDE in a window frame is not supported");
      case "referential_action":
        // A DELETE runs even at the tenant's storage limit (it makes room); SET DEFAULT would let
        // one write whole defaults into the children instead.
        if (node.eventKw.name === "DELETE" && Array.isArray(node.actionKw) && node.actionKw[1].name === "DEFAULT") {
          refuse("unsupported_syntax", "ON DELETE SET DEFAULT is not supported: use SET NULL or CASCADE");
        }
        break;
      case "binary_expr":
        if (isInOperator(node.operator)) {
          this.expr(node.left, context);
          this.inRight(node.right, context);
          return;
        }
        break;
      default:
        if (!EXPRESSION_NODES.has(node.type)) {
          refuse("unsupported_syntax", `${describe(node.type)} is not supported`);
        }
    }
    for (const child of childNodes(node)) this.expr(child, context);
  }

  /** `x IN t` and `x IN json_each(?)` name a table (or CTE) after IN, without parentheses. */
  private inRight(node: Node, context: ExprContext): void {
    if (node.type === "identifier") this.table(node, context.scope, { cte: true, alias: false });
    else if (node.type === "member_expr") schemaQualified("table after IN");
    else if (node.type === "func_call") this.tableFunction(node, context.scope);
    else this.expr(node, context);
  }

  private scalarCall(call: FuncCall, context: ExprContext): void {
    if (call.name.type !== "identifier") refuse("unsupported_syntax", "qualified function name");
    checkScalarFunction(call.name.name);
    checkSizedCall(call.name.name, call.args?.expr.args.items[0]);
    if (call.args) this.expr(call.args, context);
    if (call.filter) this.expr(call.filter, context);
    if (call.over) this.expr(call.over, context);
  }

  /** `table.column` (or `table.*`); three parts would name a schema. */
  private columnRef(node: MemberExpr, context: ExprContext): void {
    const { object, property } = node;
    if (object.type === "member_expr") schemaQualified("column");
    if (object.type !== "identifier") refuse("unsupported_syntax", `${describe(object.type)} before "."`);
    if (property.type !== "identifier" && property.type !== "all_columns") {
      refuse("unsupported_syntax", `${describe(property.type)} after "."`);
    }
    if (context.returning && asciiLower(object.name) === context.returning.lower) {
      object.text = context.returning.physical;
    }
  }

  private references(node: ReferencesSpecification, context: ExprContext): void {
    if (node.table.type === "member_expr") schemaQualified("REFERENCES table");
    if (node.table.type !== "identifier") refuse("unsupported_syntax", "REFERENCES target");
    this.table(node.table, context.scope, { cte: false, alias: false });
    for (const child of childNodes(node)) if (child !== node.table) this.expr(child, context);
  }
}

/** Rows a recursive CTE may produce: its LIMIT, which SQLite stops the recursion at. */
export const MAX_RECURSIVE_ROWS = 10_000;

/**
 * A recursive CTE (SQLite needs no RECURSIVE keyword: a CTE that names itself is one) must end with
 * `LIMIT n` (and `OFFSET m`, if any: SQLite recurses through the skipped rows too), literal numbers
 * with n + m up to MAX_RECURSIVE_ROWS. Unbounded, `SELECT 1 UNION ALL SELECT x + 1 FROM c` runs until
 * D1's 30 s limit, one query at a time per database, with no table needed: the cheapest way for a
 * read-only job to stall every tenant's queries (locally, the whole runtime).
 */
function requireBoundedRecursion(body: Query): void {
  if (body.type !== "compound_select_stmt" || !(recursionBound(body) <= MAX_RECURSIVE_ROWS)) {
    refuse(
      "unbounded_recursion",
      `a recursive CTE must end with LIMIT n (and OFFSET m, if any), numbers with n + m up to ${MAX_RECURSIVE_ROWS}`,
    );
  }
}

/**
 * A VALUES list makes as many rows as it writes out. (The parser puts it among a SELECT's clauses,
 * which its types do not say.)
 */
function valuesRows(clause: Node): number {
  return clause.type === "values_clause" ? (clause as ValuesClause).values.items.length : 1;
}

/** The rows a recursive CTE's body stops at: its final LIMIT plus OFFSET, as literals; NaN without. */
function recursionBound(body: Query): number {
  const limit = finalSelect(body)?.limit;
  const offset = limit?.offset;
  return literalCount(limit?.count) + (offset === undefined ? 0 : literalCount(offset));
}

/** A non-negative integer literal's value; NaN for anything else (no bound). */
function literalCount(node: Node | undefined): number {
  return node?.type === "number_literal" && Number.isInteger(node.value) && node.value >= 0 ? node.value : NaN;
}
