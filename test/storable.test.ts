/**
 * Results are stored as one JSON value per row, which Cloudflare's D1 and Durable Object SQLite refuse
 * over 2 MB (local SQLite does not): a result that would not fit is cut before it is stored or
 * answered, and what is answered is what is stored.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { ledgerOf } from "../src/service/admission";
import type { ExecutionResult } from "../src/schemas";
import { emptyMetrics } from "../src/results";
import { MAX_STORED_RESULT_BYTES, storableResult } from "../src/store/storable";
import { call, createTenant, type TestTenant } from "./helpers";

const MiB = 1024 * 1024;
const jsonBytes = (value: unknown) => new TextEncoder().encode(JSON.stringify(value)).byteLength;

let tenant: TestTenant;
beforeAll(async () => {
  tenant = await createTenant({ maxTrustLevel: "high" });
});

/** The stored row of a result, once the ledger has written it to the execution log. */
async function loggedJsonBytes(id: string, tenantId: string): Promise<number> {
  await ledgerOf(env, tenantId).logged();
  const row = await env.DB.prepare("SELECT result_json FROM executions WHERE id = ?")
    .bind(id)
    .first<{ result_json: string }>();
  return new TextEncoder().encode(row?.result_json ?? "").byteLength;
}

describe("results too large to store", () => {
  it("fails a job whose test cases' outputs would not fit with SANDBOX_OUTPUT_TOO_LARGE, and stores that", async () => {
    // Each output is within outputBytes; the three of them are not within a stored result.
    const { status, body } = await tenant.execute({
      code: "export default async (n) => String(n).repeat(700000)",
      trustLevel: "high",
      test: { cases: [1, 2, 3].map((n) => ({ input: n, expected: "a short answer" })) },
    });
    expect(status).toBe(422);
    expect(body.error).toMatchObject({ code: "SANDBOX_OUTPUT_TOO_LARGE", maxBytes: MAX_STORED_RESULT_BYTES });
    expect(body.tests?.cases.map((testCase) => testCase.passed)).toEqual([false, false, false]);
    expect((await tenant.get(`/v1/executions/${body.id}`)).body).toEqual(body);
    expect(await loggedJsonBytes(String(body.id), String(body.tenantId))).toBeLessThanOrEqual(MAX_STORED_RESULT_BYTES);
  });

  it("drops log entries from the end when the logs make the result too large, and keeps the output", async () => {
    // Control characters take 1 byte of the log budget and 6 bytes of JSON each ("\u0001").
    const { status, body } = await tenant.execute({
      code: "export default async () => { const line = '\\u0001'.repeat(8000); for (let i = 0; i < 130; i++) console.log(line); return 'done' }",
      trustLevel: "high",
      limits: { logBytes: 1 * MiB },
    });
    expect(status).toBe(200);
    expect(body.output).toBe("done");
    expect(body.logsTruncated).toBe(true);
    expect(body.logs?.length).toBeGreaterThan(0);
    expect(body.logs?.length).toBeLessThan(130);
    expect(body.metrics?.logsDropped).toBe(130 - (body.logs?.length ?? 0));
    expect(jsonBytes(body)).toBeLessThanOrEqual(MAX_STORED_RESULT_BYTES);
    expect((await tenant.get(`/v1/executions/${body.id}`)).body).toEqual(body);
  });

  it("cuts an asynchronous job's result the same way before its tracker stores it", async () => {
    const submitted = await tenant.execute({
      code: "export default async (n) => String(n).repeat(700000)",
      trustLevel: "high",
      test: { cases: [1, 2, 3].map((n) => ({ input: n, expected: "a short answer" })) },
      async: true,
    });
    expect(submitted.status).toBe(202);
    const waited = await call(`/v1/executions/${submitted.body.id}/wait?timeout=10000`, {
      method: "POST",
      key: tenant.key,
    });
    expect(waited.body.error?.code).toBe("SANDBOX_OUTPUT_TOO_LARGE");
    expect((await tenant.get(`/v1/executions/${submitted.body.id}`)).body).toEqual(waited.body);
  });
});

describe("storableResult", () => {
  const base: ExecutionResult = {
    id: "exec_storable",
    status: "succeeded",
    success: true,
    runtime: "edge",
    output: null,
    logs: [],
    logsTruncated: false,
    metrics: emptyMetrics(1),
    tenantId: "ten_storable",
    trustLevel: "high",
    limits: {},
    codeSha256: "",
    metadata: {},
    createdAt: "2026-12-03T00:00:00.000Z",
    finishedAt: "2026-12-03T00:00:00.000Z",
  };

  it("leaves a result that fits untouched", () => {
    const small = { ...base, output: "small" };
    expect(storableResult(small)).toBe(small);
  });

  it("drops the test cases' actual values, keeping each verdict, when they make the result too large", () => {
    const big = "z".repeat(600_000);
    const cases = [0, 1, 2, 3].map((index) => ({
      index,
      passed: index !== 2,
      input: index,
      expected: "small",
      actual: big,
    }));
    const cut = storableResult({ ...base, tests: { cases, allTestsPassed: false } });
    expect(cut.error?.code).toBe("SANDBOX_OUTPUT_TOO_LARGE");
    expect(cut.tests?.cases.map((testCase) => [testCase.passed, "actual" in testCase])).toEqual([
      [true, false],
      [true, false],
      [false, false],
      [true, false],
    ]);
  });
});
