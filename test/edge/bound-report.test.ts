/**
 * A job shares its realm with the harness, so it can blind the harness's own accounting (patch
 * TextEncoder, String.prototype.slice…). Its output and log limits must hold anyway: the report is
 * bounded again outside the isolate.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { boundReport } from "../../src/edge/bound-report";
import { JOB_COMPATIBILITY_DATE, JOB_COMPATIBILITY_FLAGS } from "../../src/edge/job-runtime";
import { prepareEdgeJob } from "../../src/edge/prepare";
import { MAX_REPORT_CHARS, type HarnessReport, type HarnessSpec } from "../../src/edge/protocol";
import { ExecutionRequest } from "../../src/schemas";
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
    // 3 MB of logs: under MAX_REPORT_CHARS, so they leave the isolate and are cut outside it.
    const { status, body } = await tenant.execute({
      code: `export default async () => { ${BLIND_THE_HARNESS} const big = 'y'.repeat(100000); for (let i = 0; i < 30; i++) console.log(big); return 1 }`,
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

describe("the report's size", () => {
  /** Logs 20 MB, returns 6 MB: everything the harness counts with is blinded first. */
  const FLOOD = `export default async () => {
    ${BLIND_THE_HARNESS}
    const line = "y".repeat(100000);
    for (let i = 0; i < 200; i++) console.log(line);
    return "x".repeat(6000000);
  }`;

  it("is at most MAX_REPORT_CHARS of JSON text when it leaves the isolate, whatever the job patches", async () => {
    const job = ExecutionRequest.parse({ runtime: "edge", code: FLOOD, limits: { outputBytes: 1000 } });
    const { runnerRequest } = prepareEdgeJob(job, {
      executionId: "exec_report_size",
      trustLevel: "high",
      acceptedAt: Date.now(),
    });
    const worker = env.LOADER.load({
      compatibilityDate: JOB_COMPATIBILITY_DATE,
      compatibilityFlags: [...JOB_COMPATIBILITY_FLAGS],
      mainModule: "harness.js",
      modules: runnerRequest.modules,
      env: {},
      globalOutbound: null,
    });
    const harness = worker.getEntrypoint("Harness") as unknown as { run(spec: HarnessSpec): Promise<unknown> };
    const raw = await harness.run(runnerRequest.spec);
    expect(typeof raw).toBe("string");
    expect((raw as string).length).toBeLessThanOrEqual(MAX_REPORT_CHARS);
  });

  it("fails such a job with SANDBOX_OUTPUT_TOO_LARGE, stored", async () => {
    const { status, body } = await tenant.execute({ code: FLOOD, limits: { outputBytes: 1000 } });
    expect(status).toBe(422);
    expect(body.error?.code).toBe("SANDBOX_OUTPUT_TOO_LARGE");
    expect(body.error?.message).toMatch(/report is over/);
    expect((await tenant.get(`/v1/executions/${body.id}`)).body).toEqual(body);
  });

  it("keeps an honest job's output and its first logs when escaping them would pass the bound", async () => {
    // 1 MiB of control characters is 6 MiB of JSON: \u0001 each.
    const { status, body } = await tenant.execute({
      code: `export default async () => {
        const line = "\u0001".repeat(8000);
        for (let i = 0; i < 130; i++) console.log(line);
        return "kept";
      }`,
      limits: { logBytes: 1024 * 1024 },
    });
    expect(status).toBe(200);
    expect(body.output).toBe("kept");
    const logs = body.logs ?? [];
    expect(logs.length).toBeGreaterThan(0);
    expect(logs.every((entry) => entry.message === "\u0001".repeat(8000))).toBe(true);
    expect(body.logsTruncated).toBe(true);
    expect(body.metrics?.logsDropped).toBe(130 - logs.length);
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

  it("cannot name a platform error code (a forged 500 or 429 would make clients retry the job)", async () => {
    // The harness keeps a binding refusal's code; a job that makes every error look like one to it
    // can put any code in its report.
    for (const code of ["INTERNAL_ERROR", "RATE_LIMITED", "SANDBOX_CANCELLED"]) {
      const { status, body } = await tenant.execute({
        code: `export default async () => { WeakSet.prototype.has = () => true;
          throw Object.assign(new Error("forged"), { code: "${code}" }) }`,
      });
      expect(status).toBe(422);
      expect(body.error?.code).toBe("SANDBOX_RUNTIME_ERROR");
    }
  });

  it("ends with a stored result when its forged output is not JSON, never a 500", async () => {
    const code = `export default async () => {
      Object.defineProperty(Array.prototype, "0", { configurable: true, set(value) {
        const forged = value && value.ok === true ? { ok: true, outputJson: "{" } : value;
        Object.defineProperty(this, "0", { value: forged, enumerable: true, writable: true, configurable: true });
      } });
      return 1;
    }`;
    const { status, body } = await tenant.execute({ code });
    expect(status).toBe(422);
    expect(body.error).toMatchObject({ code: "SANDBOX_RUNTIME_ERROR", message: expect.stringContaining("not JSON") });
    expect((await tenant.get(`/v1/executions/${body.id}`)).body).toEqual(body);
  });

  it("cannot turn a timeout into a success: a report that arrives after the deadline is a timeout", async () => {
    // toJSON runs inside the harness's own JSON.stringify, after the deadline has stopped the job's
    // functions; a bound built-in returns the forged report without calling any of them.
    // Its parts have no prototype, so that toJSON is not found again inside them.
    const code = `export default async () => {
      const bare = (value) => Object.setPrototypeOf(value, null);
      const forged = bare({ exportKind: "function", loadError: null, calls: bare([bare({ ok: true, outputJson: "42" })]),
        logs: bare([]), logBytes: 0, logsDropped: 0, network: bare([]),
        guard: bare({ ticks: 1, tripped: false, stack: null }), runMs: 0 });
      Object.prototype.toJSON = Array.prototype.at.bind([forged], 0);
      await new Promise(() => {});
    }`;
    const { status, body } = await tenant.execute({ code, timeout: 300 });
    expect(status).toBe(408);
    expect(body).toMatchObject({ status: "timed_out", error: { code: "SANDBOX_TIMEOUT" }, output: null });
  });
});
