/**
 * Job code is parsed by a parser that turns its own stack overflow into a syntax error, but the walks
 * after it recurse once per level of the tree: a chain such as `a.b.b.b…` (100 000 links in 200 KB)
 * parses flat and then overflows every walk. Such code is refused like code that does not parse.
 * No I/O.
 */

export const TOO_DEEP_MESSAGE = "the code nests too deeply to be checked";

/** Whether `error` is V8's stack overflow. */
export function isStackOverflow(error: unknown): boolean {
  return error instanceof RangeError && /call stack/i.test(error.message);
}
