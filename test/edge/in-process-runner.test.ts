/**
 * The production home of edge jobs: the dispatcher's own Worker Loader binding (here the real one in
 * the test's workerd). Only jobs that end by themselves run here: locally nothing would stop a wedged one.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { judge } from "../../src/edge/judge";
import { prepareEdgeJob } from "../../src/edge/prepare";
import { runInLoader } from "../../src/edge/runner";
import { ExecutionRequest } from "../../src/schemas";

async function runInProcess(job: Record<string, unknown>) {
  const request = ExecutionRequest.parse({ runtime: "edge", ...job });
  const prepared = prepareEdgeJob(request, {
    executionId: "exec_inprocess",
    trustLevel: "high",
    acceptedAt: Date.now(),
  });
  const reply = await runInLoader(env.LOADER, prepared.runnerRequest);
  const now = new Date();
  const noBindings = { dbQueries: 0, dbRejected: 0, kvReads: 0, kvWrites: 0 };
  const record = { id: "exec_inprocess", tenantId: "ten_test", codeSha256: "", createdAt: now, finishedAt: now };
  return judge(record, request, prepared, reply, noBindings);
}

describe("in-process runner (Worker Loader of the dispatcher)", () => {
  it("runs a function job with console capture", async () => {
    const result = await runInProcess({
      code: "export default async (n) => { console.info('n', n); return n * 3 }",
      input: 7,
    });
    expect(result).toMatchObject({ success: true, output: 21, logs: [{ level: "info", message: "n 7" }] });
  });

  it("blocks the network with globalOutbound: null", async () => {
    const result = await runInProcess({ code: "export default async () => fetch('http://169.254.169.254/latest')" });
    expect(result.error).toMatchObject({ code: "SANDBOX_NETWORK_BLOCKED", host: "169.254.169.254" });
  });

  it("stops a loop with the guard", async () => {
    const result = await runInProcess({ code: "export default async () => { for (;;) {} }", timeout: 200 });
    expect(result.error?.code).toBe("SANDBOX_TIMEOUT");
  });
});
