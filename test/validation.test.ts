/** Hostile and malformed requests: always a 4xx with a code from the vocabulary, never a 500 or a hang. */
import { beforeAll, describe, expect, it } from "vitest";
import { ErrorCode } from "../src/errors";
import { MAX_JSON_DEPTH } from "../src/json-depth";
import { call as callAs, createTenant, type TestTenant } from "./helpers";

let tenant: TestTenant;
const call = (path: string, init: RequestInit) => callAs(path, { ...init, key: tenant.key });
const post = (body: BodyInit | null, contentType: string | null = "application/json") =>
  call("/v1/executions", { method: "POST", headers: contentType ? { "content-type": contentType } : {}, body });

beforeAll(async () => {
  tenant = await createTenant();
});

describe("request validation", () => {
  it("refuses a body without a JSON content type (415), instead of reading it as {}", async () => {
    const { status, body } = await post('{"runtime":"edge","code":"export default () => 1"}', "text/plain");
    expect(status).toBe(415);
    expect(body.error?.code).toBe("UNSUPPORTED_MEDIA_TYPE");
    expect((await post("{}", null)).status).toBe(415);
  });

  it("refuses malformed JSON with 400 INVALID_JSON", async () => {
    const { status, body } = await post("{nope");
    expect(status).toBe(400);
    expect(body.error?.code).toBe("INVALID_JSON");
  });

  it("refuses schema violations with 422 and the zod issues", async () => {
    const { status, body } = await post(JSON.stringify({ runtime: "edge", code: 5, timeout: -1, extra: true }));
    expect(status).toBe(422);
    expect(body.error?.code).toBe("VALIDATION_ERROR");
    const paths = (body.error?.issues as { path: string }[]).map((issue) => issue.path);
    expect(paths).toEqual(expect.arrayContaining(["code", "timeout"]));
  });

  it("reads numbers in a query string only as decimal digits", async () => {
    const list = (limit: string) => call(`/v1/executions?limit=${limit}`, { method: "GET" });
    expect((await list("7")).status).toBe(200);
    for (const spelling of ["1e1", "0x10", "%207", "7.0", "-1", "101", "abc"]) {
      const { status, body } = await list(spelling);
      expect({ spelling, status, code: body.error?.code }).toEqual({ spelling, status: 422, code: "VALIDATION_ERROR" });
    }
  });

  it("refuses a body over 1 MiB with 413, whether or not it declares its length", async () => {
    const big = JSON.stringify({ runtime: "edge", code: "x".repeat(1024 * 1024 + 10) });
    expect((await post(big)).body.error?.code).toBe("PAYLOAD_TOO_LARGE");
    const stream = new Blob([big]).stream();
    const { status } = await call("/v1/executions", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: stream,
      // @ts-expect-error: workerd needs duplex for a streamed request body; the DOM type lacks it.
      duplex: "half",
    });
    expect(status).toBe(413);
  });

  it("refuses a body nested deeper than MAX_JSON_DEPTH with 422 before anything recursive reads it", async () => {
    const nested = (levels: number) => "[".repeat(levels) + "]".repeat(levels);
    const deep = await post(`{"runtime":"edge","code":"export default () => 1","input":${nested(200_000)}}`);
    expect(deep.status).toBe(422);
    expect(deep.body.error?.code).toBe("VALIDATION_ERROR");
    expect(deep.body.error?.issues).toEqual([expect.objectContaining({ code: "too_deep" })]);
    // The body object is the first level: its input may nest one level less.
    const deepest = await post(
      `{"runtime":"edge","code":"export default (x) => JSON.stringify(x).length","input":${nested(MAX_JSON_DEPTH - 1)}}`,
    );
    expect(deepest.status).toBe(200);
    expect(deepest.body.output).toBe(2 * (MAX_JSON_DEPTH - 1));
  });

  it("refuses code that parses but nests too deeply to be checked with 422, for both runtimes and the validator", async () => {
    // A member chain parses without recursion and then overflows every walk of its tree.
    const code = "export default () => a" + ".b".repeat(100_000);
    for (const body of [
      { runtime: "edge", code },
      { runtime: "node", code, trustLevel: "low" },
    ]) {
      const refused = await post(JSON.stringify(body));
      expect(refused.status).toBe(422);
      expect(refused.body.error?.code).toBe("VALIDATION_ERROR");
      expect(refused.body.error?.message).toMatch(/nests too deeply/);
    }
    const checked = await call("/v1/validate", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ runtime: "edge", code }),
    });
    expect(checked.status).toBe(200);
    expect(checked.body).toMatchObject({ valid: false, problems: [{ rule: "syntax-error" }] });
  });

  it("answers deeply nested code of every shape with a result or a 4xx, never a 500", async () => {
    const shapes: Record<string, (n: number) => string> = {
      sum: (n) => "a" + "+a".repeat(n),
      ternary: (n) => "a ? b : ".repeat(n) + "c",
      member: (n) => "a" + ".b".repeat(n),
      parens: (n) => "(".repeat(n) + "a" + ")".repeat(n),
      arrays: (n) => "[".repeat(n) + "]".repeat(n),
      calls: (n) => "f" + "(f".repeat(n) + ")".repeat(n),
      arrows: (n) => "() => ".repeat(n) + "1",
    };
    for (const [shape, make] of Object.entries(shapes)) {
      for (const depth of [2_000, 20_000, 100_000]) {
        const { status, body } = await post(
          JSON.stringify({ runtime: "edge", code: `export default () => ${make(depth)}` }),
        );
        expect({ shape, depth, status: status === 200 || (status >= 400 && status < 500) }).toEqual({
          shape,
          depth,
          status: true,
        });
        expect(body.error?.code ?? "none").not.toBe("INTERNAL_ERROR");
      }
    }
  });

  it("answers every malformed body from a fuzz corpus with a 4xx and a known code", async () => {
    const corpus: string[] = [
      "",
      "null",
      "[]",
      '"edge"',
      "0",
      "true",
      "{}",
      '{"runtime":"node","code":"x"}',
      '{"runtime":"edge"}',
      '{"runtime":"edge","code":""}',
      '{"runtime":"edge","code":null}',
      '{"runtime":"edge","code":"export default 1","timeout":"10"}',
      '{"runtime":"edge","code":"export default 1","timeout":1.5}',
      '{"runtime":"edge","code":"export default 1","test":{"cases":[]}}',
      '{"runtime":"edge","code":"export default 1","request":{"method":"get"}}',
      '{"runtime":"edge","code":"export default 1","request":{"path":"no-slash"}}',
      '{"runtime":"edge","code":"export default 1","limits":{"cpuTime":0}}',
      '{"runtime":"edge","code":"export default 1","__proto__":{"x":1}}',
      '{"runtime":"edge","code":"\\u0000\\uffff"}',
      '{"runtime":"edge","code":"export default (","input":1}',
      '{"runtime":"edge","code":"' + "(".repeat(5000) + '"}',
      "{".repeat(10000),
      '{"a":' + "[".repeat(3000) + "]".repeat(3000) + "}",
      "\uFEFF{}",
      '{"runtime":"edge","code":"x"}garbage',
    ];
    for (let seed = 1; seed <= 40; seed++) corpus.push(randomBytesText(seed));

    for (const text of corpus) {
      const { status, body } = await post(text);
      expect(status, text.slice(0, 80)).toBeGreaterThanOrEqual(400);
      expect(status, text.slice(0, 80)).toBeLessThan(500);
      expect(Object.values(ErrorCode)).toContain(body.error?.code);
    }
  });
});

/** Deterministic pseudo-random printable text (seeded), so a failure is reproducible. */
function randomBytesText(seed: number): string {
  let state = seed * 2654435761;
  const length = 1 + ((seed * 37) % 200);
  let text = "";
  for (let i = 0; i < length; i++) {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    text += String.fromCharCode(32 + (state % 95));
  }
  return text;
}
