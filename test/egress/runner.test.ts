/**
 * Network egress end to end through the production runner (the dispatcher's own Worker Loader):
 * prepare → loaderRunner (gateway as globalOutbound, meter by execution id) → judge.
 */
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { judge } from "../../src/edge/judge";
import { prepareEdgeJob } from "../../src/edge/prepare";
import { loaderRunner } from "../../src/edge/runner";
import { ExecutionRequest } from "../../src/schemas";
import { sessionOf } from "../helpers";

const NETWORK = { enabled: true, allowedDomains: ["api.example.com"], maxBytes: 2_000 };

async function run(job: Record<string, unknown>, trustLevel: "high" | "low" = "high") {
  const request = ExecutionRequest.parse({ runtime: "edge", ...job });
  const executionId = `exec_${crypto.randomUUID()}`;
  const prepared = prepareEdgeJob(request, { executionId, trustLevel, acceptedAt: Date.now() });
  const session = sessionOf("ten_egress", { executionId, trustLevel, maxCalls: 10 });
  const reply = await loaderRunner(env.LOADER, exports).run(prepared.runnerRequest, session);
  const now = new Date();
  const record = { id: executionId, tenantId: "ten_egress", codeSha256: "", createdAt: now, finishedAt: now };
  return judge(record, request, prepared, reply, session.counters);
}

describe("network egress through the production runner", () => {
  it("runs an allowed fetch and counts it", async () => {
    const result = await run({
      code: "export default async () => (await fetch('https://api.example.com/hello')).text()",
      limits: { network: NETWORK },
    });
    expect(result).toMatchObject({ success: true, output: "hello from api.example.com" });
    expect(result.metrics).toMatchObject({ networkRequests: 1, networkBytes: 26, networkBlocked: 0 });
    expect(result.limits).toMatchObject({ subrequests: 50, networkBytes: 2_000 });
  });

  it("fails a job whose refused fetch it caught, with the rule and host", async () => {
    const result = await run({
      code: "export default async () => { try { await fetch('http://169.254.169.254/') } catch (e) { return e.rule } }",
      limits: { network: NETWORK },
    });
    expect(result.error).toMatchObject({
      code: "SANDBOX_NETWORK_BLOCKED",
      rule: "metadata_address",
      host: "169.254.169.254",
    });
    expect(result.metrics).toMatchObject({ networkRequests: 0, networkBlocked: 1 });
  });

  it("cuts a response at the byte budget", async () => {
    const result = await run({
      code: "export default async () => (await fetch('https://api.example.com/stream?chunks=5&size=1000')).text()",
      limits: { network: NETWORK },
    });
    expect(result.error).toMatchObject({ code: "SANDBOX_NETWORK_BLOCKED", rule: "byte_budget" });
    expect(result.metrics).toMatchObject({ networkRequests: 1, networkBytes: 2_000 });
  });

  it("keeps a job without network as before", async () => {
    const result = await run({ code: "export default async () => fetch('https://api.example.com/hello')" });
    expect(result.error).toMatchObject({ code: "SANDBOX_NETWORK_BLOCKED", host: "api.example.com" });
    expect(result.limits).toMatchObject({ subrequests: 0, networkBytes: 0 });
  });

  it("refuses connect() even with network", async () => {
    const result = await run({
      code: "import { connect } from 'cloudflare:sockets'; export default async () => { try { connect('api.example.com:443') } catch {} return 1 }",
      limits: { network: NETWORK },
    });
    expect(result.error?.code).toBe("SANDBOX_NETWORK_BLOCKED");
  });

  it("refuses network up front at a level without any", async () => {
    await expect(run({ code: "export default () => 1", limits: { network: NETWORK } }, "low")).rejects.toThrow(
      /not available at trust level "low"/,
    );
  });
});
