/**
 * Which names are common table expressions at a point of the statement, following SQLite's rules
 * (checked against SQLite 3.53): every CTE of a WITH is visible in the statement it heads, in every
 * subquery inside it, and in the bodies of all CTEs of the same WITH, including its own and later
 * ones; an inner WITH shadows an outer one. Only a name resolved here is left unrenamed, so being
 * wrong in the other direction (treating a CTE as a table) can only break a query, never widen it.
 */
import { asciiLower } from "./names";

export class CteScope {
  static readonly EMPTY = new CteScope(new Set(), undefined);

  private constructor(
    private readonly names: ReadonlySet<string>,
    private readonly outer: CteScope | undefined,
  ) {}

  /** `names` already ASCII-lowercased. */
  with(names: ReadonlySet<string>): CteScope {
    return new CteScope(names, this);
  }

  has(name: string): boolean {
    return this.definer(name) !== undefined;
  }

  /** The scope whose WITH defines `name` (the innermost, as SQLite resolves it), or undefined. */
  definer(name: string): CteScope | undefined {
    return this.names.has(asciiLower(name)) ? this : this.outer?.definer(name);
  }
}
