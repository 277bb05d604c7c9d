/**
 * Generic access to the parser's tree: the child nodes of any node, whatever its type, so the
 * checks can visit every node without knowing each field of each node type.
 */
import type { LimitClause, Node, SelectStmt, Whitespace } from "sql-parser-cst";

const NOT_CHILDREN: ReadonlySet<string> = new Set(["leading", "trailing", "range"]);

function isNode(value: unknown): value is Node {
  return (
    typeof value === "object" &&
    value !== null &&
    !Array.isArray(value) &&
    typeof (value as { type?: unknown }).type === "string"
  );
}

export function childNodes(node: Node): Node[] {
  const children: Node[] = [];
  for (const [key, value] of Object.entries(node)) {
    if (NOT_CHILDREN.has(key)) continue;
    if (Array.isArray(value)) {
      for (const item of value as unknown[]) if (isNode(item)) children.push(item);
    } else if (isNode(value)) {
      children.push(value);
    }
  }
  return children;
}

/** The spaces, newlines and comments attached before and after a node. */
export function whitespaceOf(node: Node): Whitespace[][] {
  const lists: Whitespace[][] = [];
  if (node.leading) lists.push(node.leading);
  if (node.trailing) lists.push(node.trailing);
  return lists;
}

/**
 * The SELECT that ends a query (the last part of a compound), where SQLite reads the LIMIT of the
 * whole query, and that LIMIT clause if it has one; undefined for anything but a query.
 */
export function finalSelect(query: Node): { select: SelectStmt; limit: LimitClause | undefined } | undefined {
  let last = query;
  while (last.type === "compound_select_stmt") last = last.right;
  if (last.type !== "select_stmt") return undefined;
  const limit = last.clauses.find((clause): clause is LimitClause => clause.type === "limit_clause");
  return { select: last, limit };
}
