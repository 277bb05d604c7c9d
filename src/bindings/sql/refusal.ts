/**
 * A refusal raised deep inside the checks and turned into a verdict at the top, so every check can
 * stop the whole statement at the first problem it sees.
 */
import type { SqlRule } from "./types";

export class SqlRefusal extends Error {
  constructor(
    readonly rule: SqlRule,
    message: string,
  ) {
    super(message);
    this.name = "SqlRefusal";
  }
}

export function refuse(rule: SqlRule, message: string): never {
  throw new SqlRefusal(rule, message);
}
