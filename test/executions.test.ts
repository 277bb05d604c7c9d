import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { ledgerOf } from "../src/service/admission";
import { createTenant, type TestTenant } from "./helpers";

let tenant: TestTenant;
const execute = (job: Record<string, unknown>) => tenant.execute(job);
const call = (path: string) => tenant.get(path);

beforeAll(async () => {
  tenant = await createTenant();
});

describe("POST /v1/executions: function form", () => {
  it("runs a default-exported async function with the input and returns its value", async () => {
    const { status, body } = await execute({
      code: "export default async function (input) { return input.a + input.b }",
      input: { a: 2, b: 3 },
    });
    expect(status).toBe(200);
    expect(body).toMatchObject({ status: "succeeded", success: true, output: 5 });
    expect(body.id).toMatch(/^exec_[0-9a-f]{32}$/);
    expect(body.metrics).toMatchObject({ coldStart: true, cpuTime: null, logBytes: 0 });
    expect(body.metrics?.duration).toEqual(expect.any(Number));
  });

  it("passes ctx.executionId and ctx.env to the function", async () => {
    const { body } = await execute({
      code: "export default async function (input, ctx) { return { id: ctx.executionId, env: Object.keys(ctx.env) } }",
    });
    expect(body.output).toEqual({ id: body.id, env: ["DB", "KV"] });
  });

  it("returns null for undefined and refuses values JSON cannot carry", async () => {
    expect((await execute({ code: "export default async () => undefined" })).body.output).toBeNull();
    const bigint = await execute({ code: "export default async () => 10n" });
    expect(bigint.status).toBe(422);
    expect(bigint.body.error?.code).toBe("SANDBOX_RUNTIME_ERROR");
    expect(bigint.body.error?.message).toMatch(/JSON/);
  });

  it("fails with SANDBOX_OUTPUT_TOO_LARGE when the return value exceeds the output limit", async () => {
    const { status, body } = await execute({ code: "export default async () => 'x'.repeat(2 * 1024 * 1024)" });
    expect(status).toBe(422);
    expect(body.error?.code).toBe("SANDBOX_OUTPUT_TOO_LARGE");
  });
});

describe("POST /v1/executions: Worker { fetch } form", () => {
  it("sends the described request and returns status, headers and body", async () => {
    const { status, body } = await execute({
      code: `export default {
        async fetch(request) {
          const url = new URL(request.url);
          return new Response(request.method + " " + url.pathname + url.search + " " + request.headers.get("x-k"), {
            status: 201, headers: { "x-out": "yes" } });
        }
      }`,
      request: { method: "GET", path: "/items?x=1", headers: { "x-k": "v" } },
    });
    expect(status).toBe(200);
    expect(body.output).toMatchObject({ status: 201, body: "GET /items?x=1 v", headers: { "x-out": "yes" } });
  });

  it("POSTs the input as JSON when no request is described", async () => {
    const { body } = await execute({
      code: "export default { async fetch(request) { const data = await request.json(); return Response.json({ sum: data.a + data.b, type: request.headers.get('content-type') }) } }",
      input: { a: 1, b: 2 },
    });
    expect(JSON.parse((body.output as { body: string }).body)).toEqual({ sum: 3, type: "application/json" });
  });
});

describe("console capture", () => {
  it("records every console call in order with its level", async () => {
    const { body } = await execute({
      code: "export default async function () { console.log('a', 1, {b: 2}); console.info('i'); console.warn('w'); console.error(new Error('boom')); console.debug('d'); return 0 }",
    });
    expect(body.logs?.map((entry) => [entry.level, entry.message.split("\n")[0]])).toEqual([
      ["log", 'a 1 {"b":2}'],
      ["info", "i"],
      ["warn", "w"],
      ["error", "Error: boom"],
      ["debug", "d"],
    ]);
    expect(body.logs?.[0]?.timestamp).toEqual(expect.any(Number));
    expect(body.metrics?.logBytes).toBeGreaterThan(0);
  });

  it("keeps the logs of a job that threw", async () => {
    const { status, body } = await execute({
      code: "export default async function () { console.log('before'); throw new Error('nope') }",
    });
    expect(status).toBe(422);
    expect(body.logs?.map((entry) => entry.message)).toEqual(["before"]);
    expect(body.error?.code).toBe("SANDBOX_RUNTIME_ERROR");
  });

  it("keeps the logs of a job stopped by its timeout", async () => {
    const { body } = await execute({
      code: "export default async function () { console.log('started'); for (;;) {} }",
      timeout: 500,
    });
    expect(body.error?.code).toBe("SANDBOX_TIMEOUT");
    expect(body.logs?.map((entry) => entry.message)).toEqual(["started"]);
  });

  it("truncates a console flood with a flag instead of failing", async () => {
    const { status, body } = await execute({
      code: "export default async function () { for (let i = 0; i < 100000; i++) console.log('line ' + i); return 'done' }",
    });
    expect(status).toBe(200);
    expect(body.output).toBe("done");
    expect(body.logsTruncated).toBe(true);
    expect(body.logs?.length).toBe(1000);
    expect(body.metrics?.logsDropped).toBe(99000);
  });

  it("records nothing when captureConsole is false", async () => {
    const { body } = await execute({
      code: "export default async () => { console.log('x'); return 1 }",
      captureConsole: false,
    });
    expect(body.logs).toEqual([]);
  });
});

describe("test cases", () => {
  it("runs the function once per case and compares in the dispatcher", async () => {
    const { status, body } = await execute({
      code: "export default async function (n) { if (n < 0) throw new Error('negative'); return n * 2 }",
      test: {
        cases: [
          { input: 1, expected: 2 },
          { input: 2, expected: 5 },
          { input: -1, expected: 0 },
        ],
      },
    });
    expect(status).toBe(200);
    expect(body.tests?.allTestsPassed).toBe(false);
    expect(body.tests?.cases.map((testCase) => testCase.passed)).toEqual([true, false, false]);
    expect(body.tests?.cases[1]?.actual).toBe(4);
    expect(body.tests?.cases[2]?.error?.message).toMatch(/negative/);
  });

  it("compares objects structurally, whatever the key order", async () => {
    const { body } = await execute({
      code: "export default async (input) => ({ b: input.x, a: [1, { c: true }] })",
      test: { cases: [{ input: { x: null }, expected: { a: [1, { c: true }], b: null } }] },
    });
    expect(body.tests?.allTestsPassed).toBe(true);
  });

  it("refuses test cases for a { fetch } handler", async () => {
    const { status, body } = await execute({
      code: "export default { async fetch() { return new Response('x') } }",
      test: { cases: [{ input: 1, expected: 1 }] },
    });
    expect(status).toBe(422);
    expect(body.error?.code).toBe("VALIDATION_ERROR");
  });
});

describe("errors", () => {
  it("points the stack trace at the job's own line and column, without harness frames", async () => {
    const { body } = await execute({
      code: "export default async function () {\n  const values = [1, 2];\n  for (const v of values) {\n    if (v === 2) null.boom;\n  }\n}",
    });
    expect(body.error).toMatchObject({ code: "SANDBOX_RUNTIME_ERROR", name: "TypeError", line: 4, column: 23 });
    expect(body.error?.stack).toContain("job.js:4:23");
    expect(body.error?.stack).not.toMatch(/harness\.js|cordon-guard/);
  });

  it("reports a syntax error with line and column, and runs nothing", async () => {
    const { status, body } = await execute({ code: "export default async function () {\n  return 1 +;\n}" });
    expect(status).toBe(422);
    expect(body.error).toMatchObject({ code: "VALIDATION_ERROR", line: 2, column: 13 });
    expect(body.id).toBeUndefined();
  });

  it("requires a default export", async () => {
    const { status, body } = await execute({ code: "export const x = 1" });
    expect(status).toBe(422);
    expect(body.error?.code).toBe("VALIDATION_ERROR");
  });

  it("fails at run time when the default export has the wrong shape", async () => {
    const { status, body } = await execute({ code: "const value = 42; export default value" });
    expect(status).toBe(422);
    expect(body.error?.code).toBe("SANDBOX_RUNTIME_ERROR");
    expect(body.error?.message).toMatch(/default export/);
  });

  it("refuses imports, dynamic import() and the reserved namespace with SANDBOX_SECURITY_VIOLATION", async () => {
    const { status, body } = await execute({
      code: "import fs from 'node:fs'; const __cordon_tick = 1; export default async () => import('./x.js')",
    });
    expect(status).toBe(403);
    expect(body.error?.code).toBe("SANDBOX_SECURITY_VIOLATION");
    expect((body.error?.reasons as { rule: string }[]).map((reason) => reason.rule).sort()).toEqual([
      "dynamic-import",
      "import-not-allowed",
      "reserved-identifier",
    ]);
  });

  it("answers NOT_FOUND for an unknown execution and an unknown route", async () => {
    const missing = await call("/v1/executions/exec_00000000000000000000000000000000");
    expect(missing.status).toBe(404);
    expect(missing.body.error?.code).toBe("NOT_FOUND");
    const route = await call("/v1/nothing-here");
    expect(route.status).toBe(404);
    expect(route.body.error?.code).toBe("NOT_FOUND");
  });
});

describe("network", () => {
  it("blocks fetch and names the host, even when the job catches the error", async () => {
    const { status, body } = await execute({
      code: "export default async function () { try { await fetch('https://api.example.com/data') } catch {} return 'swallowed' }",
    });
    expect(status).toBe(403);
    expect(body.error).toMatchObject({ code: "SANDBOX_NETWORK_BLOCKED", host: "api.example.com", via: "fetch" });
    expect(body.metrics?.networkBlocked).toBe(1);
  });

  it("blocks a WebSocket and names the host, even when the job catches the error", async () => {
    const { body } = await execute({
      code: "export default async function () { try { new WebSocket('wss://chat.example.com/room') } catch {} return 'swallowed' }",
    });
    expect(body.error).toMatchObject({ code: "SANDBOX_NETWORK_BLOCKED", host: "chat.example.com", via: "websocket" });
  });

  it("blocks connect() from cloudflare:sockets and names the host", async () => {
    const { body } = await execute({
      code: "import { connect } from 'cloudflare:sockets'; export default async function () { connect('db.internal:5432') }",
    });
    expect(body.error).toMatchObject({ code: "SANDBOX_NETWORK_BLOCKED", host: "db.internal", via: "connect" });
  });
});

describe("isolation and storage", () => {
  it("gives every job a fresh isolate: globals set by one job are invisible to the next", async () => {
    const first = await execute({
      code: "export default async () => { globalThis.leak = 'secret'; return typeof globalThis.leak }",
    });
    const second = await execute({ code: "export default async () => typeof globalThis.leak" });
    expect(first.body.output).toBe("string");
    expect(second.body.output).toBe("undefined");
  });

  it("runs jobs on the Web-standard runtime, without Node.js's globals (process, Buffer) or its timers", async () => {
    const { body } = await execute({
      code: "export default async () => [typeof process, typeof Buffer, typeof setTimeout(() => {}, 0)]",
    });
    expect(body.output).toEqual(["undefined", "undefined", "number"]);
  });

  it("stores every result, failed ones included, for GET /v1/executions/:id", async () => {
    const ok = await execute({ code: "export default async () => { console.log('hi'); return [1, 2] }" });
    const failed = await execute({ code: "export default async () => { throw new RangeError('bad') }" });
    for (const run of [ok, failed]) {
      const stored = await call(`/v1/executions/${run.body.id}`);
      expect(stored.status).toBe(200);
      expect(stored.body).toEqual(run.body);
    }
  });

  it("still reads results stored before a metric existed, with that metric at zero", async () => {
    const { body } = await execute({ code: "export default async () => 'old'" });
    // The log row is written just after the answer (the tenant's ledger gathers results for a moment).
    await ledgerOf(env, String(body.tenantId)).logged();
    const row = await env.DB.prepare("SELECT result_json FROM executions WHERE id = ?")
      .bind(body.id)
      .first<{ result_json: string }>();
    const stored = JSON.parse(row?.result_json ?? "{}") as { metrics: Record<string, unknown> };
    delete stored.metrics.networkRequests;
    await env.DB.prepare("UPDATE executions SET result_json = ? WHERE id = ?")
      .bind(JSON.stringify(stored), body.id)
      .run();

    const read = await call(`/v1/executions/${body.id}`);
    expect(read.status).toBe(200);
    expect(read.body.metrics?.networkRequests).toBe(0);
    expect((await call("/v1/executions?limit=5")).status).toBe(200);
  });

  it("clamps limits to the documented maxima and reports the effective ones", async () => {
    const { body } = await execute({
      code: "export default async () => 1",
      timeout: 999_999,
      memory: 4096,
      limits: { cpuTime: 10 },
    });
    expect(body.limits).toMatchObject({ timeoutMs: 30_000, cpuTimeMs: 10, memoryMb: 128 });
  });
});
