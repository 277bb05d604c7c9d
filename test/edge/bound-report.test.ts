/**
 * A job shares its realm with the harness, so it can blind the harness's own accounting (patch
 * TextEncoder, String.prototype.slice…). Its output and log limits must hold anyway: the report is
 * bounded again outside the isolate.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { boundReport } from "../../src/edge/bound-report";
import type { HarnessReport, HarnessSpec } from "../../src/edge/protocol";
import { jsonNestsDeeperThan } from "../../src/json-depth";
import { MAX_MESSAGE_CHARS } from "../../src/untrusted-output";
import { createTenant, type TestTenant } from "../helpers";

/** Job code that makes every string measure zero bytes and every slice a no-op, inside its isolate. */
const BLIND_THE_HARNESS =
  "TextEncoder.prototype.encode = function () { return new Uint8Array(0) };" +
  "String.prototype.slice = function () { return String(this) };";

let tenant: TestTenant;
beforeAll(async () => {
  tenant = await createTenant();
});

describe("limits hold when the job patches what the harness counts with", () => {
  it("refuses an output over outputBytes with SANDBOX_OUTPUT_TOO_LARGE", async () => {
    const { status, body } = await tenant.execute({
      code: `export default async () => { ${BLIND_THE_HARNESS} return 'x'.repeat(200000) }`,
      limits: { outputBytes: 1000 },
    });
    expect(status).toBe(422);
    expect(body.error?.code).toBe("SANDBOX_OUTPUT_TOO_LARGE");
    expect(body.output).toBeNull();
  });

  it("keeps the logs within logBytes and each message within its length, and says they were cut", async () => {
    const { status, body } = await tenant.execute({
      code: `export default async () => { ${BLIND_THE_HARNESS} const big = 'y'.repeat(100000); for (let i = 0; i < 50; i++) console.log(big); return 1 }`,
      limits: { logBytes: 20000 },
    });
    expect(status).toBe(200);
    const logs = body.logs ?? [];
    const bytes = logs.reduce((sum, entry) => sum + new TextEncoder().encode(entry.message).byteLength, 0);
    expect(logs.length).toBeGreaterThan(0);
    expect(bytes).toBeLessThanOrEqual(20000);
    expect(body.metrics?.logBytes).toBe(bytes);
    expect(body.logsTruncated).toBe(true);
    for (const entry of logs) expect(entry.message).toMatch(/… \[truncated\]$/);
  });

  it("cuts a thrown error's message to size", async () => {
    const { status, body } = await tenant.execute({
      code: `export default async () => { ${BLIND_THE_HARNESS} throw new Error('z'.repeat(1000000)) }`,
    });
    expect(status).toBe(422);
    expect(body.error?.code).toBe("SANDBOX_RUNTIME_ERROR");
    expect(body.error?.message.length).toBeLessThan(MAX_MESSAGE_CHARS + 200);
  });
});

describe("a job that forges the harness's report", () => {
  it("cannot hand the dispatcher an output nested deeply enough to overflow its stack", async () => {
    // A setter on Array.prototype[0] catches the harness's `calls[0] = outcome` and puts a forged one.
    const code = `export default async () => {
      Object.defineProperty(Array.prototype, "0", { configurable: true, set(value) {
        const forged = value && value.ok === true ? { ok: true, outputJson: "[".repeat(300000) + "]".repeat(300000) } : value;
        Object.defineProperty(this, "0", { value: forged, enumerable: true, writable: true, configurable: true });
      } });
      return 1;
    }`;
    const { status, body } = await tenant.execute({ code });
    expect(status).toBe(422);
    expect(body.error?.code).toBe("SANDBOX_OUTPUT_TOO_LARGE");
    expect(body.error?.message).toMatch(/levels deep/);
    expect((await tenant.get(`/v1/executions/${body.id}`)).body).toEqual(body);
  });
});

describe("jsonNestsDeeperThan", () => {
  it("counts brackets outside strings only", () => {
    // A string holding `]]]` and an escaped quote: the brackets in it do not count.
    expect(jsonNestsDeeperThan('[[["]]]\\"]]]"]]]', 3)).toBe(false);
    // A string ending in an escaped backslash is closed by the quote after it: the brackets after count.
    expect(jsonNestsDeeperThan('["\\\\",[[]]]', 2)).toBe(true);
    expect(jsonNestsDeeperThan('["\\\\",[[]]]', 3)).toBe(false);
  });
});

describe("boundReport", () => {
  const spec: HarnessSpec = {
    executionId: "exec_bounds",
    deadline: 0,
    captureConsole: true,
    maxLogEntries: 2,
    maxLogBytes: 100,
    maxLogMessageChars: 10,
    maxOutputBytes: 8,
    inputs: [1],
    request: { method: "POST", url: "https://job.cordon.invalid/", headers: {}, body: null },
    bindings: [],
    maxBindingCalls: 0,
    network: false,
  };
  const report: HarnessReport = {
    exportKind: "function",
    loadError: null,
    calls: [
      { ok: true, outputJson: '"ok"' },
      { ok: true, outputJson: '"a call nobody asked for"' },
    ],
    logs: [
      { level: "log", message: "short", timestamp: 1 },
      { level: "warn", message: "a message longer than ten chars", timestamp: 2 },
      { level: "error", message: "one entry too many", timestamp: 3 },
    ],
    logBytes: 0,
    logsDropped: 0,
    network: Array.from({ length: 30 }, (_, i) => ({ host: `h${i}.example`, via: "fetch" })),
    guard: { ticks: 1, tripped: false, stack: null },
    runMs: 1,
  };

  it("keeps one call per input, the first entries that fit, and the first network attempts", () => {
    const bounded = boundReport(report, spec);
    expect(bounded.calls).toEqual([{ ok: true, outputJson: '"ok"' }]);
    expect(bounded.logs.map((entry) => entry.message)).toEqual(["short", "a message … [truncated]"]);
    expect(bounded.logBytes).toBe(5 + new TextEncoder().encode("a message … [truncated]").byteLength);
    expect(bounded.logsDropped).toBe(1);
    expect(bounded.network).toHaveLength(20);
  });

  it("turns an output over the limit into CordonOutputTooLarge, measured in UTF-8 bytes", () => {
    const bounded = boundReport({ ...report, calls: [{ ok: true, outputJson: '"éééé"' }] }, spec);
    expect(bounded.calls[0]).toMatchObject({ ok: false, error: { name: "CordonOutputTooLarge" } });
  });
});
