/**
 * Text kept in a Durable Object's SQLite in parts: Cloudflare refuses a string or row over 2 MB, and
 * a job's ticket (code, instrumented code, source map, input) can be larger than that.
 */

/** UTF-16 units per part: at most 3 UTF-8 bytes each, so a part stays under 1.5 MiB. */
export const MAX_PART_CHARS = 512 * 1024;

/** `text` cut into parts of at most `maxChars`, never between the two halves of a surrogate pair. */
export function textParts(text: string, maxChars: number = MAX_PART_CHARS): string[] {
  const parts: string[] = [];
  for (let at = 0; at < text.length;) {
    let end = Math.min(text.length, at + maxChars);
    // Each part is stored as UTF-8 on its own: a lone half would become U+FFFD.
    const last = text.charCodeAt(end - 1);
    if (end < text.length && end - at > 1 && last >= 0xd800 && last <= 0xdbff) end--;
    parts.push(text.slice(at, end));
    at = end;
  }
  return parts;
}
