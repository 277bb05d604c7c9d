/**
 * The tenant namespace: how a job's logical table name maps to the physical one in the shared
 * database, and which logical names a job may not use at all.
 *
 * A tenant key is [a-z0-9]+ (no underscore), so in `t_<key>__<name>` the first `__` after `t_`
 * always ends the key: one tenant's physical names can never be spelled from another's prefix.
 */
import { refuse } from "./refusal";

const TENANT_KEY = /^[a-z0-9]{1,32}$/;
const SEPARATOR = "__";
const MAX_NAME_LENGTH = 128;

export type NameRole = "table" | "index" | "cte";

/** The tenant key comes from the platform; a bad one is a programming error, not a refusal. */
export function assertTenantKey(tenantKey: string): void {
  if (!TENANT_KEY.test(tenantKey)) {
    throw new TypeError(`tenantKey must match ${TENANT_KEY}, got ${JSON.stringify(tenantKey)}`);
  }
}

export function tablePrefix(tenantKey: string): string {
  assertTenantKey(tenantKey);
  return `t_${tenantKey}${SEPARATOR}`;
}

export function physicalName(tenantKey: string, logicalName: string): string {
  return tablePrefix(tenantKey) + logicalName;
}

/** Double-quoted SQLite identifier; the only quoting the rewritten SQL ever uses. */
export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** SQLite compares identifiers case-insensitively for ASCII letters only; so do we. */
export function asciiLower(name: string): string {
  return name.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

/**
 * C0 controls and DEL: SQLite would keep them in a quoted name, but they only serve to confuse
 * logs, and a NUL could cut the statement short in C code.
 */
export function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}

/**
 * Refuses a logical name a job may not create or reach: SQLite's and the platform's internal
 * tables, and anything shaped like a physical name (which would only make sense as a way into
 * another tenant's namespace).
 */
export function checkLogicalName(name: string, role: NameRole): void {
  const what = `${role} name ${JSON.stringify(name)}`;
  if (name.length === 0 || name.length > MAX_NAME_LENGTH) {
    refuse("invalid_name", `${what} must be 1 to ${MAX_NAME_LENGTH} characters`);
  }
  if (hasControlCharacter(name)) refuse("invalid_name", `${what} contains a control character`);
  const lower = asciiLower(name);
  if (lower.startsWith("sqlite_")) refuse("schema_table", `${what}: sqlite_* objects are internal`);
  if (lower.startsWith("pragma_")) refuse("pragma", `${what}: pragma_* tables expose PRAGMAs`);
  if (lower.startsWith("_cf_") || lower.startsWith("d1_")) {
    refuse("schema_table", `${what}: _cf_* and d1_* tables belong to the platform`);
  }
  if (lower.startsWith("t_") || lower.includes(SEPARATOR)) {
    refuse("reserved_name", `${what}: names starting with t_ or containing __ are reserved`);
  }
}
