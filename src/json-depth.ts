/**
 * How deep JSON text nests, found by a linear scan instead of a parse. Parsers, zod, structured clone
 * (RPC) and JSON.stringify all recurse per level, so text nested deeply enough (a megabyte of `[` is
 * half a million levels) overflows the stack of whoever handles it next: such text is refused before
 * anything recursive sees it. No I/O.
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
