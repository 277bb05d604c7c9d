import { describe, expect, it } from "vitest";
import { instrumentJob } from "../../src/edge/instrument";

describe("instrumentJob", () => {
  it("puts a guard checkpoint in every loop body and function body", () => {
    const result = instrumentJob(
      "export default async (x) => x;\nfunction f() { for (;;) g(); }\nconst o = { m() { while (1) {} } };\ndo f(); while (0);",
    );
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    const ticks = result.code.match(/__cordon_tick\(\)/g) ?? [];
    // arrow, f, for, method m, while, do-while
    expect(ticks).toHaveLength(6);
    expect(result.code).toContain("for (;;) {__cordon_tick();g();}");
    expect(result.code).toContain("do {__cordon_tick();f();} while (0)");
  });

  it("keeps every line on its line number", () => {
    const source = "export default async () => {\n  let a = 1;\n  while (a) { a-- }\n  return a\n}";
    const result = instrumentJob(source);
    expect(result.ok && result.code.split("\n").length).toBe(source.split("\n").length);
  });

  it("classifies the default export statically where it can", () => {
    const kind = (code: string) => {
      const result = instrumentJob(code);
      return result.ok ? result.exportKind : result.kind;
    };
    expect(kind("export default function () {}")).toBe("function");
    expect(kind("export default { fetch() {} }")).toBe("fetch-handler");
    expect(kind("const h = 1; export default h")).toBe("unknown");
    expect(kind("export const x = 1")).toBe("no-default-export");
  });

  it("rewrites cloudflare:sockets to the shim and refuses every other import", () => {
    const sockets = instrumentJob("import { connect } from 'cloudflare:sockets'; export default () => connect");
    expect(sockets.ok && sockets.code).toContain('from "./cordon-sockets.js"');
    const other = instrumentJob("import x from './cordon-guard.js'; export default () => x");
    expect(other).toMatchObject({ ok: false, kind: "violations", violations: [{ rule: "import-not-allowed" }] });
    const reexport = instrumentJob("export * from 'cloudflare:workers'; export default () => 1");
    expect(reexport).toMatchObject({ ok: false, kind: "violations" });
  });

  it("refuses declaring or reading names in the reserved namespace", () => {
    for (const code of [
      "let __cordon_tick = () => {}; export default () => 1",
      "export default (__cordonX) => 1",
      "function __cordon() {} export default () => 1",
      "export default () => __cordon_tick",
    ]) {
      expect(instrumentJob(code), code).toMatchObject({
        ok: false,
        kind: "violations",
        violations: [{ rule: "reserved-identifier" }],
      });
    }
  });
});

describe("whether a job can read its ctx", () => {
  const reads = (code: string) => {
    const result = instrumentJob(code);
    if (!result.ok) throw new Error(result.kind);
    return result.readsContext;
  };

  it("cannot, for a function written in the export with at most one parameter", () => {
    expect(reads("export default async function (input) { return input.a + input.b }")).toBe(false);
    expect(reads("export default async ({ a } = {}) => a")).toBe(false);
    expect(reads("export default function run() { return 1 }")).toBe(false);
  });

  it("can, by a second parameter, a rest parameter or `arguments` anywhere in the module", () => {
    expect(reads("export default async (input, ctx) => ctx.env")).toBe(true);
    expect(reads("export default async (...all) => all[1]")).toBe(true);
    expect(reads("export default async function (input) { return arguments[1] }")).toBe(true);
    expect(reads("function f() { return arguments } export default async (input) => f")).toBe(true);
  });

  it("is taken to, for an export it cannot see through", () => {
    expect(reads("export default { async fetch(request) { return new Response('') } }")).toBe(true);
    expect(reads("const run = (input) => input; export default run")).toBe(true);
    expect(reads("export default ((f) => f)(async (input) => input)")).toBe(true);
  });
});
