/**
 * The SQL policy of the DB binding (issue #4): one pure function that confines a job's statement
 * to its tenant's tables, or says which rule it broke. See README.md for the rules.
 */
export { checkStatement, MAX_SQL_LENGTH } from "./policy";
export { physicalName, tablePrefix } from "./names";
export { ALLOWED_FUNCTIONS, ALLOWED_TABLE_FUNCTIONS } from "./functions";
export {
  ALL_KINDS,
  READ_ONLY_KINDS,
  READ_WRITE_KINDS,
  SQL_RULES,
  STATEMENT_KINDS,
  type CheckOptions,
  type SqlRule,
  type SqlVerdict,
  type StatementKind,
} from "./types";
