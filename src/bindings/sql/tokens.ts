/**
 * Makes the printed statement mean to SQLite exactly what it meant to the parser.
 *
 * The rewritten SQL is printed back from the tree, so any place where the parser and SQLite read
 * the same characters differently would let a job smuggle text past the checks. This pass closes
 * the ones we know of by re-spelling every token from what the parser understood:
 * - comments become a single space (nothing the parser skipped reaches SQLite);
 * - whitespace must be plain space, tab, CR or LF;
 * - string literals are re-quoted from their parsed value, quoted identifiers from their parsed
 *   name (always with double quotes);
 * - keywords, unquoted identifiers, numbers, blobs and parameters must have a plain ASCII spelling
 *   (the parser folds case with toLowerCase(), which maps the Kelvin sign to "k"; SQLite does not);
 * - two tokens the parser read with nothing between them get a space between them: the parser
 *   ends an identifier at some characters SQLite keeps in it (`sqlite＿master` is two tokens to
 *   the parser, one to SQLite), and two re-quoted identifiers must not fuse into one (`"a""b"`).
 * Any other kind of token is refused.
 */
import type { Node } from "sql-parser-cst";
import { hasControlCharacter, quoteIdentifier } from "./names";
import { refuse } from "./refusal";
import { childNodes, whitespaceOf } from "./tree";

const PLAIN_WHITESPACE = /^[ \t\r\n]*$/;
const KEYWORD = /^[A-Za-z_]+$/;
// SQLite treats every character from U+0080 up as an identifier character; so does the parser.
const UNQUOTED_IDENTIFIER = /^[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*$/;
const NUMBER = /^(?:0[xX][0-9A-Fa-f]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)$/;
const BLOB = /^[xX]'[0-9A-Fa-f]*'$/;
const PARAMETER = /^(?:\?[0-9]{0,5}|:[A-Za-z_][A-Za-z0-9_]*)$/;
// SQLite also accepts a string literal where it expects a name (`SELECT 1 AS 'one'`).
const QUOTE_OPENERS = new Set(['"', "[", "`", "'"]);
const TOKEN_TYPES: ReadonlySet<string> = new Set([
  "identifier",
  "keyword",
  "string_literal",
  "number_literal",
  "blob_literal",
  "parameter",
]);

export function normalizeTokens(statement: Node): void {
  normalizeTree(statement);
  separateAdjacentTokens(statement);
}

function normalizeTree(node: Node): void {
  for (const list of whitespaceOf(node)) {
    for (const [index, item] of list.entries()) {
      if (item.type === "block_comment" || item.type === "line_comment") {
        list[index] = { type: "space", text: " " };
      } else if (!PLAIN_WHITESPACE.test(item.text)) {
        refuse("unsupported_syntax", "only spaces, tabs and line breaks may separate tokens");
      }
    }
  }
  normalizeToken(node);
  for (const child of childNodes(node)) normalizeTree(child);
}

function separateAdjacentTokens(statement: Node): void {
  const tokens: Node[] = [];
  const collect = (node: Node): void => {
    if (TOKEN_TYPES.has(node.type)) tokens.push(node);
    else for (const child of childNodes(node)) collect(child);
  };
  collect(statement);
  tokens.sort((a, b) => start(a) - start(b));
  for (let i = 1; i < tokens.length; i++) {
    const previous = tokens[i - 1];
    const token = tokens[i];
    if (previous && token && end(previous) === start(token)) {
      token.leading = [{ type: "space", text: " " }, ...(token.leading ?? [])];
    }
  }
}

function start(node: Node): number {
  return rangeOf(node)[0];
}

function end(node: Node): number {
  return rangeOf(node)[1];
}

function rangeOf(node: Node): [number, number] {
  return node.range ?? refuse("parse_error", "the parser gave a token without a source range");
}

function normalizeToken(node: Node): void {
  switch (node.type) {
    case "identifier":
      if (hasControlCharacter(node.name)) {
        refuse("invalid_name", `identifier ${JSON.stringify(node.name)} has a control character`);
      }
      if (QUOTE_OPENERS.has(node.text[0] ?? "")) {
        node.text = quoteIdentifier(node.name);
      } else if (!UNQUOTED_IDENTIFIER.test(node.text) || node.text !== node.name) {
        refuse("unsupported_syntax", `identifier ${JSON.stringify(node.text)} must be quoted`);
      }
      return;
    case "string_literal":
      if (node.value.includes("\u0000")) refuse("unsupported_syntax", "NUL in a string literal");
      node.text = `'${node.value.replaceAll("'", "''")}'`;
      return;
    case "keyword":
      expect(KEYWORD, node.text, "keyword");
      return;
    case "number_literal":
      expect(NUMBER, node.text, "number");
      return;
    case "blob_literal":
      expect(BLOB, node.text, "blob literal");
      return;
    case "parameter":
      expect(PARAMETER, node.text, "parameter");
      return;
    default:
      if (typeof (node as { text?: unknown }).text === "string") {
        refuse("unsupported_syntax", `${node.type} tokens are not supported`);
      }
  }
}

function expect(pattern: RegExp, text: string, what: string): void {
  if (!pattern.test(text)) refuse("unsupported_syntax", `${what} ${JSON.stringify(text)} is not plain ASCII SQL`);
}
