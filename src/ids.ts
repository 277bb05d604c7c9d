/** Identifiers: a type prefix and 32 hex characters of randomness (`exec_…`, `ten_…`, `key_…`). */
export function newId(kind: "exec" | "ten" | "key"): string {
  return `${kind}_${crypto.randomUUID().replaceAll("-", "")}`;
}
