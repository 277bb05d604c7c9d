/**
 * Static check and instrumentation of an edge job's module, before it is loaded.
 *
 * - Parses with acorn (a syntax error is reported with line and column, never run).
 * - Refuses what the edge runtime does not offer a job: imports other than the shimmed
 *   `cloudflare:sockets`, dynamic `import()`, and identifiers in our reserved `__cordon` namespace
 *   (so a job cannot shadow the guard).
 * - Inserts a call to the guard's `tick` at the top of every loop body and every function body, so
 *   loops, recursion and promise chains written in the job hit a checkpoint that stops them once the
 *   deadline passes. Native work that never re-enters job code (a sort of a huge array, a regular
 *   expression) is not covered here; the runner's process limits cover it (docs/runaway-guard.md).
 *
 * No I/O; pure function of the source text. Never inserts a newline, and returns a source map, so
 * stack traces can be mapped back to the job's own lines and columns.
 */
import { parse, type Node } from "acorn";
import { ancestor } from "acorn-walk";
import MagicString from "magic-string";
import type { SourceMapV3 } from "./source-map";
import { isStackOverflow, TOO_DEEP_MESSAGE } from "../stack-overflow";

export const JOB_MODULE = "job.js";
export const GUARD_MODULE = "cordon-guard.js";
export const SOCKETS_SHIM_MODULE = "cordon-sockets.js";
const TICK = "__cordon_tick";
const RESERVED_PREFIX = "__cordon";
/** Modules a job may import, and what each resolves to inside the isolate. */
const IMPORT_REWRITES: Readonly<Record<string, string>> = {
  "cloudflare:sockets": `./${SOCKETS_SHIM_MODULE}`,
};

export interface Violation {
  rule: "import-not-allowed" | "dynamic-import" | "reserved-identifier" | "construct-refused";
  message: string;
  line: number;
  column: number;
}

export type InstrumentResult =
  | {
      ok: true;
      code: string;
      map: SourceMapV3;
      exportKind: ExportKind;
      /** Whether the job can read the ctx (and so the env) it is called with; see readsContext. */
      readsContext: boolean;
    }
  | { ok: false; kind: "syntax"; message: string; line: number; column: number }
  | { ok: false; kind: "no-default-export"; message: string }
  | { ok: false; kind: "violations"; violations: Violation[] };

/** What the default export looks like statically; `unknown` (e.g. an identifier) is decided at run time. */
export type ExportKind = "function" | "fetch-handler" | "unknown";

interface Positioned {
  start: number;
  end: number;
  loc?: { start: { line: number; column: number } } | null;
}

// acorn's estree types are loose; these narrow views name exactly the fields we read.
interface LoopNode extends Positioned {
  type: string;
  body: Positioned & { type: string };
}
interface FunctionNode extends Positioned {
  type: string;
  expression?: boolean;
  body: Positioned & { type: string };
}

const FUNCTION_TYPES = new Set(["FunctionDeclaration", "FunctionExpression", "ArrowFunctionExpression"]);

export interface InstrumentOptions {
  /** Global names this job's cordon refuses (e.g. `eval` for low and untrusted). */
  refusedGlobals?: ReadonlySet<string>;
}

export function instrumentJob(source: string, options: InstrumentOptions = {}): InstrumentResult {
  const refusedGlobals = options.refusedGlobals ?? new Set<string>();
  let program: Node;
  try {
    program = parse(source, { ecmaVersion: "latest", sourceType: "module", locations: true });
  } catch (error) {
    const loc = (error as { loc?: { line: number; column: number } }).loc;
    return {
      ok: false,
      kind: "syntax",
      message: error instanceof Error ? error.message : String(error),
      line: loc?.line ?? 1,
      column: (loc?.column ?? 0) + 1,
    };
  }

  const out = new MagicString(source);
  const violations: Violation[] = [];
  let defaultExport: DefaultExport | undefined;
  let mentionsArguments = false;
  const at = (node: Positioned) => ({
    line: node.loc?.start.line ?? 1,
    column: (node.loc?.start.column ?? 0) + 1,
  });

  const checkSource = (node: Positioned & { source?: (Positioned & { value?: unknown }) | null }) => {
    if (!node.source) return;
    const specifier = String(node.source.value);
    const rewrite = IMPORT_REWRITES[specifier];
    if (rewrite) {
      out.overwrite(node.source.start, node.source.end, JSON.stringify(rewrite));
      return;
    }
    violations.push({
      rule: "import-not-allowed",
      message: `edge jobs are a single module; importing "${specifier}" is not allowed`,
      ...at(node),
    });
  };

  const checkName = (node: Positioned & { name: string }) => {
    if (node.name === "arguments") mentionsArguments = true;
    if (refusedGlobals.has(node.name)) {
      violations.push({
        rule: "construct-refused",
        message: `\`${node.name}\` is not allowed at this trust level`,
        ...at(node),
      });
    }
    if (!node.name.startsWith(RESERVED_PREFIX)) return;
    violations.push({
      rule: "reserved-identifier",
      message: `identifiers starting with "${RESERVED_PREFIX}" are reserved`,
      ...at(node),
    });
  };

  // acorn-walk's visitor type lacks its "VariablePattern" category; the object is checked by shape here.
  const checks: Record<string, (node: Node) => void> = {
    ImportDeclaration: (node) => checkSource(node as never),
    ExportNamedDeclaration: (node) => checkSource(node as never),
    ExportAllDeclaration: (node) => checkSource(node as never),
    ImportExpression: (node) => {
      violations.push({
        rule: "dynamic-import",
        message: "dynamic import() is not allowed in edge jobs",
        ...at(node as Positioned),
      });
    },
    // Names read (Identifier) and names declared (VariablePattern: variables, parameters, functions).
    Identifier: (node) => checkName(node as never),
    VariablePattern: (node) => checkName(node as never),
    ExportDefaultDeclaration: (node) => {
      defaultExport = (node as unknown as { declaration: DefaultExport }).declaration;
    },
  };
  try {
    walkJob(program, checks, out);
  } catch (error) {
    if (!isStackOverflow(error)) throw error;
    return { ok: false, kind: "syntax", message: TOO_DEEP_MESSAGE, line: 1, column: 1 };
  }
  if (violations.length > 0) return { ok: false, kind: "violations", violations };
  if (defaultExport === undefined) {
    return {
      ok: false,
      kind: "no-default-export",
      message:
        "the job must `export default` an async function (input, ctx) or a Worker object { fetch(request, env, ctx) }",
    };
  }

  // Kept on the first line (no newline) so every other line keeps its number.
  out.prepend(`import { tick as ${TICK} } from "./${GUARD_MODULE}";`);
  const map = out.generateMap({ source: JOB_MODULE, file: JOB_MODULE, hires: true });
  return {
    ok: true,
    code: out.toString(),
    map: { ...map, version: 3, sources: [JOB_MODULE] } as SourceMapV3,
    exportKind: classifyDefaultExport(defaultExport),
    readsContext: readsContext(defaultExport, mentionsArguments),
  };
}

/** Runs the checks over the tree and puts a guard checkpoint in every function and loop body. */
function walkJob(program: Node, checks: Record<string, (node: Node) => void>, out: MagicString): void {
  ancestor(program, checks);
  const loop = (node: Node) => guardLoop(out, node as unknown as LoopNode);
  ancestor(program, {
    // acorn-walk visits every function kind (declaration, expression, arrow, method) as "Function".
    Function: (node) => guardFunction(out, node as unknown as FunctionNode),
    ForStatement: loop,
    ForInStatement: loop,
    ForOfStatement: loop,
    WhileStatement: loop,
    DoWhileStatement: loop,
  });
}

interface DefaultExport {
  type: string;
  properties?: unknown[];
  params?: { type: string }[];
}

/**
 * Whether a job can read the ctx the harness calls it with. Only a function written right in the
 * export, declaring at most one parameter and no rest, in a module that never names `arguments`,
 * cannot: modules are strict code, so a function has no other way to its second argument. Anything
 * else (a handler object, a function made elsewhere) is taken to read it. Such a job's isolate gets
 * no binding stub at all: it could not use one, and handing one in costs every load (bench/README.md).
 */
function readsContext(declaration: DefaultExport, mentionsArguments: boolean): boolean {
  if (mentionsArguments || !FUNCTION_TYPES.has(declaration.type)) return true;
  const params = declaration.params ?? [];
  return params.length > 1 || params.some((param) => param.type === "RestElement");
}

function classifyDefaultExport(declaration: DefaultExport): ExportKind {
  if (FUNCTION_TYPES.has(declaration.type)) return "function";
  if (declaration.type === "ObjectExpression") {
    const hasFetch = (declaration.properties ?? []).some((property) => {
      const key = (property as { key?: { name?: string; value?: unknown } }).key;
      return key?.name === "fetch" || key?.value === "fetch";
    });
    return hasFetch ? "fetch-handler" : "unknown";
  }
  return "unknown";
}

function guardLoop(out: MagicString, loop: LoopNode): void {
  const body = loop.body;
  if (body.type === "BlockStatement") {
    out.appendLeft(body.start + 1, `${TICK}();`);
  } else {
    out.appendLeft(body.start, `{${TICK}();`);
    out.prependRight(body.end, "}");
  }
}

function guardFunction(out: MagicString, fn: FunctionNode): void {
  const body = fn.body;
  if (body.type === "BlockStatement") {
    out.appendLeft(body.start + 1, `${TICK}();`);
  } else {
    // Arrow function with an expression body: `x => expr` becomes `x => (tick(), expr)`.
    out.appendLeft(body.start, `(${TICK}(),`);
    out.prependRight(body.end, ")");
  }
}
