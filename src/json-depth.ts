/**
 * How deep JSON text (or a value that came over RPC) nests, found without recursion. Parsers, zod,
 * structured clone (RPC) and JSON.stringify all recurse per level, so a value nested deeply enough (a
 * megabyte of `[` is half a million levels) overflows the stack of whoever handles it next: it is
 * refused before anything recursive sees it. No I/O.
 */

/** More than any request or result needs, and far from where recursion overflows. */
export const MAX_JSON_DEPTH = 256;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;

/** Whether `text` (JSON, or what claims to be) nests arrays and objects deeper than `maxDepth`. */
export function jsonNestsDeeperThan(text: string, maxDepth: number = MAX_JSON_DEPTH): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const char = text.charCodeAt(i);
    if (inString) {
      if (char === BACKSLASH) i++;
      else if (char === QUOTE) inString = false;
    } else if (char === QUOTE) {
      inString = true;
    } else if (char === OPEN_ARRAY || char === OPEN_OBJECT) {
      if (++depth > maxDepth) return true;
    } else if (char === CLOSE_ARRAY || char === CLOSE_OBJECT) {
      depth--;
    }
  }
  return false;
}

/**
 * What keeps a value that came over RPC from being one JSON text could give: arrays and objects
 * nesting deeper than `maxDepth` (counted as in text: the outermost object is level 1), one object
 * reached twice, or more than `maxChars` of JSON. Structured clone keeps shared objects and cycles,
 * JSON has neither, and a walk of a tree whose every level holds its child twice takes 2^depth steps
 * (zod's would). A sparse array is a few bytes to send whatever its length, and JSON writes every
 * hole as `null`: its length is counted here, before anything writes it out. Walked with a list
 * instead of recursion; null when there is nothing.
 */
export function valueShapeProblem(
  value: unknown,
  maxDepth: number = MAX_JSON_DEPTH,
  maxChars: number = Infinity,
): "too_deep" | "shared" | "too_large" | null {
  const seen = new Set<object>();
  const pending: { value: unknown; depth: number }[] = [{ value, depth: 0 }];
  // A lower bound of the JSON's length: a character per array slot, the keys and the strings.
  let chars = 0;
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    if (typeof next.value === "string") chars += next.value.length + 2;
    else chars++;
    if (chars > maxChars) return "too_large";
    if (next.value === null || typeof next.value !== "object") continue;
    if (seen.has(next.value)) return "shared";
    seen.add(next.value);
    const depth = next.depth + 1;
    if (depth > maxDepth) return "too_deep";
    if (Array.isArray(next.value)) {
      chars += next.value.length;
      if (chars > maxChars) return "too_large";
      for (const child of Object.values(next.value)) pending.push({ value: child, depth });
    } else {
      for (const [key, child] of Object.entries(next.value)) {
        chars += key.length + 3;
        pending.push({ value: child, depth });
      }
    }
  }
  return null;
}
