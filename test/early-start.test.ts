/**
 * Jobs started before their admission answer: their binding calls wait for it and are refused when it
 * is no, a refused job answers 429 and leaves no trace, and jobs with network never start early.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { BindingSession } from "../src/bindings/session";
import { hostRunner } from "../src/edge/host-runner";
import { prepareEdgeJob } from "../src/edge/prepare";
import { prepareNodeJob } from "../src/node/prepare";
import { tenantKvPrefix } from "../src/bindings/kv";
import { ExecutionRequest } from "../src/schemas";
import { mayStartEarly, noteAdmission } from "../src/service/early-start";
import { call, createTenant, sessionOf } from "./helpers";

function sessionFor(tenantId: string, admitted: Promise<boolean>): BindingSession {
  return sessionOf(tenantId, { maxCalls: 10, admitted });
}

// A binding call as it crosses to the dispatcher: JSON text.
const put = (key: string) => JSON.stringify({ binding: "KV", method: "put", key, value: "written" });

describe("a job started before its admission answer", () => {
  it("has its binding calls wait for the answer, and run once admitted", async () => {
    const tenantId = `ten_${crypto.randomUUID().replaceAll("-", "")}`;
    let admit: (value: boolean) => void = () => undefined;
    const session = sessionFor(tenantId, new Promise<boolean>((resolve) => (admit = resolve)));
    let answered = false;
    const call = session.call(put("waited")).then((answer) => {
      answered = true;
      return answer;
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(answered).toBe(false);
    expect(await env.JOB_KV.get(`${tenantKvPrefix(tenantId)}waited`)).toBeNull();

    admit(true);
    expect(await call).toMatchObject({ ok: true });
    expect(await env.JOB_KV.get(`${tenantKvPrefix(tenantId)}waited`)).toBe("written");
  });

  it("has every binding call refused, with no effect, when it is not admitted", async () => {
    const tenantId = `ten_${crypto.randomUUID().replaceAll("-", "")}`;
    const session = sessionFor(tenantId, Promise.resolve(false));
    expect(await session.call(put("refused"))).toMatchObject({
      ok: false,
      error: { code: "SANDBOX_SECURITY_VIOLATION", rule: "not_admitted" },
    });
    expect(await env.JOB_KV.get(`${tenantKvPrefix(tenantId)}refused`)).toBeNull();
    expect(session.counters.kvWrites).toBe(0);
  });

  it("answers 429 through the API when refused, and its writes never land", async () => {
    const tenant = await createTenant({ maxConcurrency: 1 });
    const holder = await tenant.execute({
      code: "export default async () => { await new Promise((r) => setTimeout(r, 1500)); return 'held' }",
      async: true,
    });
    expect(holder.status).toBe(202);
    const refused = await tenant.execute({
      code: "export default async (_input, { env }) => { await env.KV.put('early', 'ran'); return 1 }",
    });
    expect(refused.status).toBe(429);
    expect(refused.body.error?.code).toBe("RATE_LIMITED");

    // Once the slot is free again, the refused job's write is nowhere.
    await call(`/v1/executions/${String(holder.body.id)}/wait?timeout=5000`, { method: "POST", key: tenant.key });
    const read = await tenant.execute({ code: "export default async (_input, { env }) => env.KV.get('early')" });
    expect(read.status).toBe(200);
    expect(read.body.output).toBeNull();
  });
});

describe("a refused early start on the local host", () => {
  it("never starts there when its cancel arrives before its run (the dispatcher cancels it on refusal)", async () => {
    const executionId = `exec_${crypto.randomUUID().replaceAll("-", "")}`;
    const job = ExecutionRequest.parse({ runtime: "edge", code: "export default async () => 'ran'" });
    const { runnerRequest } = prepareEdgeJob(job, { executionId, trustLevel: "high", acceptedAt: Date.now() });
    const runner = hostRunner(env.CORDON_HOST_URL, env.CORDON_HOST_TOKEN);
    await runner.cancel(executionId);
    const reply = await runner.run(runnerRequest, sessionFor("ten_early", Promise.resolve(false)));
    expect(reply).toMatchObject({ ok: false, error: { code: "SANDBOX_UNAVAILABLE" } });
    expect(reply.ok ? "" : reply.error.message).toContain("never started");
  });
});

describe("who starts early", () => {
  const nodeJob = (extra: Record<string, unknown>) =>
    prepareNodeJob(ExecutionRequest.parse({ runtime: "node", code: "module.exports = async () => 1", ...extra }), {
      executionId: "exec_x",
      trustLevel: "high",
      tenantId: "ten_x",
      networkAvailable: true,
    });

  const job = (extra: Record<string, unknown>) =>
    prepareEdgeJob(ExecutionRequest.parse({ runtime: "edge", code: "export default async () => 1", ...extra }), {
      executionId: "exec_x",
      trustLevel: "high",
      acceptedAt: Date.now(),
    });

  it("is an edge job without network or a node job without network or packages, of a tenant not refused lately", () => {
    const tenantId = `ten_${crypto.randomUUID().replaceAll("-", "")}`;
    expect(mayStartEarly(tenantId, job({}))).toBe(true);
    expect(
      mayStartEarly(tenantId, job({ limits: { network: { enabled: true, allowedDomains: ["example.com"] } } })),
    ).toBe(false);
    expect(mayStartEarly(tenantId, nodeJob({}))).toBe(true);
    expect(mayStartEarly(tenantId, nodeJob({ packages: ["left-pad@1.3.0"] }))).toBe(false);
    expect(
      mayStartEarly(tenantId, nodeJob({ limits: { network: { enabled: true, allowedDomains: ["example.com"] } } })),
    ).toBe(false);

    noteAdmission(tenantId, { allowed: true, remaining: 5 });
    expect(mayStartEarly(tenantId, job({}))).toBe(true);
    noteAdmission(tenantId, { allowed: true, remaining: 0 });
    expect(mayStartEarly(tenantId, job({}))).toBe(false);
  });

  it("is not a job of a tenant refused in the last seconds", () => {
    const tenantId = `ten_${crypto.randomUUID().replaceAll("-", "")}`;
    noteAdmission(tenantId, { allowed: false, remaining: 3 });
    expect(mayStartEarly(tenantId, job({}))).toBe(false);
  });
});
