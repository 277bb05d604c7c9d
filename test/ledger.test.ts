/**
 * Synchronous jobs and their tenant's ledger: the job is journaled at admission and kept until its
 * result is in the execution log, so a job whose request died still ends with a stored result, and
 * GET, wait, cancel and DELETE find it wherever it is.
 */
import { env, exports } from "cloudflare:workers";
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { beforeEach, describe, expect, it } from "vitest";
import type { JournalEntry, TenantLedger } from "../src/durable/tenant-ledger";
import { hostRunner } from "../src/edge/host-runner";
import { prepareEdgeJob } from "../src/edge/prepare";
import { ExecutionRequest, ExecutionResult } from "../src/schemas";
import { ledgerOf, RATE_WINDOW_MS } from "../src/service/admission";
import { call, createTenant, expectHiddenFrom, sessionOf, type TestTenant } from "./helpers";

const TRIVIAL = "export default async (input) => input";

let tenant: TestTenant;

beforeEach(async () => {
  tenant = await createTenant({ maxConcurrency: 1 });
});

function newExecutionId(): string {
  return `exec_${crypto.randomUUID().replaceAll("-", "")}`;
}

/** Admits a synchronous job the way the dispatcher does, without running it (a request that died). */
async function admitJournaled(id: string, deadline: number) {
  const entry: JournalEntry = {
    id,
    tenantId: tenant.id,
    codeSha256: "0".repeat(64),
    acceptedAt: Date.now(),
    deadline,
    metadata: { note: "journaled" },
    prepared: { executionId: id, runtime: "edge", trustLevel: "high", limits: { timeoutMs: 1000 } },
  };
  return ledgerOf(env, tenant.id).admit({
    executionId: id,
    keyId: tenant.keyId,
    tenantLimit: 100,
    keyLimit: null,
    windowMs: RATE_WINDOW_MS,
    maxConcurrency: 1,
    leaseMs: 60_000,
    journal: entry,
  });
}

/** A real result of this tenant, re-labelled as the journaled job's (what its runner would answer). */
async function answerFor(id: string): Promise<ExecutionResult> {
  const ran = await tenant.execute({ code: TRIVIAL, input: "from the runner" });
  expect(ran.status).toBe(200);
  return ExecutionResult.parse({ ...ran.body, id });
}

function ledgerStub() {
  return env.TENANT_LEDGER.get(env.TENANT_LEDGER.idFromName(tenant.id));
}

async function journalRows(): Promise<number> {
  return runInDurableObject(ledgerStub(), (_instance: TenantLedger, state) => {
    return state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM journal").one().n;
  });
}

/** Moves a journaled job's deadline into the past (its alarm is then run by the test). */
async function expire(id: string): Promise<void> {
  await runInDurableObject(ledgerStub(), (_instance: TenantLedger, state) => {
    state.storage.sql.exec("UPDATE journal SET deadline = ? WHERE id = ?", Date.now() - 1, id);
  });
}

describe("a synchronous job's journal", () => {
  it("ends with a stored result, in the log and nowhere else, once answered", async () => {
    const ran = await tenant.execute({ code: TRIVIAL, input: 7, metadata: { run: "one" } });
    expect(ran.status).toBe(200);
    await ledgerOf(env, tenant.id).logged();
    expect(await journalRows()).toBe(0);
    const row = await env.DB.prepare("SELECT tracked, status FROM executions WHERE id = ?")
      .bind(ran.body.id)
      .first<{ tracked: number; status: string }>();
    expect(row).toEqual({ tracked: 0, status: "succeeded" });
    expect((await tenant.get(`/v1/executions/${String(ran.body.id)}`)).body).toMatchObject({ output: 7 });
  });

  it("writes a full batch of results to the log without waiting out the gathering time", async () => {
    const template = await answerFor(newExecutionId());
    await ledgerOf(env, tenant.id).logged(); // the template's own run is written, so the batch is ours alone
    const ids = Array.from({ length: 50 }, newExecutionId);
    for (const id of ids) {
      expect(await admitJournaled(id, Date.now() + 60_000)).toMatchObject({ allowed: true });
      await ledgerOf(env, tenant.id).complete(id, { ...template, id });
    }
    // Well before the ledger's 1 s gathering time would end, and without a list asking for them.
    const startedAt = Date.now();
    let logged = 0;
    while (Date.now() - startedAt < 600 && logged < ids.length) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      const count = await env.DB.prepare(
        `SELECT COUNT(*) AS n FROM executions WHERE id IN (${ids.map(() => "?").join(", ")})`,
      )
        .bind(...ids)
        .first<{ n: number }>();
      logged = count?.n ?? 0;
    }
    expect(logged).toBe(ids.length);
  });

  it("lists a result that waits in the ledger with no write under way (as after the object restarted)", async () => {
    const id = newExecutionId();
    const result = await answerFor(id);
    await ledgerOf(env, tenant.id).logged();
    // Straight into storage, as a restarted object finds it: finished, not logged, nothing gathering.
    await runInDurableObject(ledgerStub(), (_instance: TenantLedger, state) => {
      state.storage.sql.exec(
        "INSERT INTO journal (id, entry_json, deadline, result_json) VALUES (?, '{}', ?, ?)",
        id,
        Date.now() + 60_000,
        JSON.stringify(result),
      );
    });
    const listed = await tenant.get("/v1/executions?limit=100");
    expect(listed.status).toBe(200);
    expect((listed.body.executions as { id: string }[]).map((row) => row.id)).toContain(id);
    expect(await journalRows()).toBe(0);
  });

  it("gives up a job whose request died, at its deadline, with SANDBOX_TIMEOUT, and frees its slot", async () => {
    const id = newExecutionId();
    expect(await admitJournaled(id, Date.now() + 60_000)).toMatchObject({ allowed: true });

    // While it is journaled: found as running, and it holds the tenant's only concurrency slot.
    expect((await tenant.get(`/v1/executions/${id}`)).body).toMatchObject({ id, status: "running" });
    const refused = await tenant.execute({ code: TRIVIAL });
    expect(refused.status).toBe(429);

    await expire(id);
    expect(await runDurableObjectAlarm(ledgerStub())).toBe(true);
    await ledgerOf(env, tenant.id).logged();

    const stored = await tenant.get(`/v1/executions/${id}`);
    expect(stored.body).toMatchObject({
      id,
      status: "timed_out",
      success: false,
      metadata: { note: "journaled" },
      error: { code: "SANDBOX_TIMEOUT", logsLost: true },
    });
    expect(await journalRows()).toBe(0);
    expect((await tenant.execute({ code: TRIVIAL })).status).toBe(200);
  });

  it("stops a job it gives up on its home: one that reaches the local host afterwards never starts", async () => {
    const id = newExecutionId();
    await admitJournaled(id, Date.now() + 60_000);
    await expire(id);
    expect(await runDurableObjectAlarm(ledgerStub())).toBe(true);
    const runner = hostRunner(env.CORDON_HOST_URL, env.CORDON_HOST_TOKEN);
    const job = ExecutionRequest.parse({ runtime: "edge", code: TRIVIAL });
    const { runnerRequest } = prepareEdgeJob(job, { executionId: id, trustLevel: "high", acceptedAt: Date.now() });
    const session = sessionOf(tenant.id, { executionId: id, maxCalls: 0 });
    expect(await runner.run(runnerRequest, session)).toMatchObject({
      ok: false,
      error: { code: "SANDBOX_UNAVAILABLE", message: expect.stringContaining("never started") },
    });
  });

  it("keeps a cancelled job cancelled when its runner answers afterwards", async () => {
    const answer = await answerFor(newExecutionId());
    const id = answer.id;
    await admitJournaled(id, Date.now() + 60_000);

    const cancelled = await call(`/v1/executions/${id}/cancel`, { method: "POST", key: tenant.key });
    expect(cancelled.body).toMatchObject({ id, status: "cancelled", error: { code: "SANDBOX_CANCELLED" } });

    // The ledger answers the result it kept, or null once that result is already in the log.
    const kept = await ledgerOf(env, tenant.id).complete(id, answer);
    expect(kept === null || kept.status === "cancelled", JSON.stringify(kept)).toBe(true);
    await ledgerOf(env, tenant.id).logged();
    expect((await tenant.get(`/v1/executions/${id}`)).body).toMatchObject({ status: "cancelled" });
    const row = await env.DB.prepare("SELECT status FROM executions WHERE id = ?").bind(id).first<{ status: string }>();
    expect(row?.status).toBe("cancelled");
  });

  it("holds a cancelled job's slot until its runner answers (a cancelled isolate runs on in production)", async () => {
    const answer = await answerFor(newExecutionId());
    const id = answer.id;
    await admitJournaled(id, Date.now() + 60_000);
    const cancelled = await call(`/v1/executions/${id}/cancel`, { method: "POST", key: tenant.key });
    expect(cancelled.body).toMatchObject({ status: "cancelled" });
    await ledgerOf(env, tenant.id).logged();

    // Found as cancelled, in the log, while the tenant's only slot is still held by the run.
    expect((await tenant.get(`/v1/executions/${id}`)).body).toMatchObject({ id, status: "cancelled" });
    const refused = await tenant.execute({ code: TRIVIAL });
    expect(refused.status).toBe(429);
    expect(refused.body.error?.code).toBe("RATE_LIMITED");

    await ledgerOf(env, tenant.id).complete(id, answer);
    expect((await tenant.execute({ code: TRIVIAL })).status).toBe(200);
    expect((await tenant.get(`/v1/executions/${id}`)).body).toMatchObject({ status: "cancelled" });
  });

  it("frees a cancelled job's slot at its deadline when its runner never answers", async () => {
    const id = newExecutionId();
    // The deadline leaves room for a loaded machine: the cancel and the refused job must come before it.
    const deadline = Date.now() + 2_000;
    await admitJournaled(id, deadline);
    await call(`/v1/executions/${id}/cancel`, { method: "POST", key: tenant.key });
    expect((await tenant.execute({ code: TRIVIAL })).status).toBe(429);
    await new Promise((resolve) => setTimeout(resolve, deadline - Date.now() + 100));
    expect((await tenant.execute({ code: TRIVIAL })).status).toBe(200);
  });

  it("wakes a waiter when the runner answers", async () => {
    const answer = await answerFor(newExecutionId());
    const id = answer.id;
    await admitJournaled(id, Date.now() + 60_000);

    const waiting = call(`/v1/executions/${id}/wait?timeout=10000`, { method: "POST", key: tenant.key });
    const early = await call(`/v1/executions/${id}/wait?timeout=10`, { method: "POST", key: tenant.key });
    expect(early.status).toBe(202);
    await ledgerOf(env, tenant.id).complete(id, answer);
    const woken = await waiting;
    expect(woken.status).toBe(200);
    expect(woken.body).toMatchObject({ id, output: "from the runner" });
  });

  it("answers null to a runner whose job is no longer held, and the log keeps the given-up result", async () => {
    const answer = await answerFor(newExecutionId());
    const id = answer.id;
    await admitJournaled(id, Date.now() + 60_000);
    await expire(id);
    expect(await runDurableObjectAlarm(ledgerStub())).toBe(true);
    await ledgerOf(env, tenant.id).logged();
    expect(await ledgerOf(env, tenant.id).complete(id, answer)).toBeNull();
    expect((await tenant.get(`/v1/executions/${id}`)).body).toMatchObject({ status: "timed_out" });
  });

  it("is deleted everywhere by DELETE, and another tenant cannot see or touch it", async () => {
    const ran = await tenant.execute({ code: TRIVIAL, input: 1 });
    const id = String(ran.body.id);
    const stranger = await createTenant();
    await expectHiddenFrom(stranger, id);

    const deleted = await exports.default.fetch(
      new Request(`https://cordon.test/v1/executions/${id}`, {
        method: "DELETE",
        headers: { authorization: `Bearer ${tenant.key}` },
      }),
    );
    expect(deleted.status).toBe(204);
    expect((await tenant.get(`/v1/executions/${id}`)).status).toBe(404);
    expect(await env.DB.prepare("SELECT id FROM executions WHERE id = ?").bind(id).first()).toBeNull();
    expect(await journalRows()).toBe(0);
  });

  it("refuses to delete a job that is still running", async () => {
    const id = newExecutionId();
    await admitJournaled(id, Date.now() + 60_000);
    const refused = await call(`/v1/executions/${id}`, { method: "DELETE", key: tenant.key });
    expect(refused.status).toBe(409);
    expect(refused.body).toMatchObject({ error: { code: "EXECUTION_NOT_FINISHED" } });
  });
});

describe("the ledger's rate window", () => {
  const admitFor = (
    keyId: string,
    windowMs: number,
    tenantLimit: number,
    keyLimit: number | null,
    slots = { maxConcurrency: 100, leaseMs: 60_000 },
  ) =>
    ledgerOf(env, tenant.id).admit({ executionId: newExecutionId(), keyId, tenantLimit, keyLimit, windowMs, ...slots });

  it("counts admissions per tenant and per key, and gives them back as they leave the window", async () => {
    expect(await admitFor("key_a", 60_000, 3, 1)).toMatchObject({ allowed: true, remaining: 2 });
    expect(await admitFor("key_a", 60_000, 3, 1)).toMatchObject({ allowed: false, reason: "key_rate" });
    expect(await admitFor("key_b", 60_000, 3, null)).toMatchObject({ allowed: true, remaining: 1 });
    expect(await admitFor("key_b", 60_000, 3, null)).toMatchObject({ allowed: true, remaining: 0 });
    expect(await admitFor("key_b", 60_000, 3, null)).toMatchObject({ allowed: false, reason: "tenant_rate" });

    // Seen through a 1 ms window, every earlier admission has left it: all counts are back to zero.
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(await admitFor("key_a", 1, 3, 1)).toMatchObject({ allowed: true, remaining: 2 });
    const counts = await runInDurableObject(ledgerStub(), (_instance: TenantLedger, state) =>
      state.storage.sql
        .exec<{ key_id: string; n: number }>("SELECT key_id, n FROM hit_counts ORDER BY key_id")
        .toArray(),
    );
    expect(counts).toEqual([{ key_id: "key_a", n: 1 }]);
  });

  it("does not count a lease that expired (its dispatcher died) against the concurrency cap", async () => {
    const oneSlot = { maxConcurrency: 1, leaseMs: 1 };
    expect(await admitFor("key_a", 60_000, 100, null, oneSlot)).toMatchObject({ allowed: true });
    const held = { maxConcurrency: 1, leaseMs: 60_000 };
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(await admitFor("key_a", 60_000, 100, null, held)).toMatchObject({ allowed: true });
    expect(await admitFor("key_a", 60_000, 100, null, held)).toMatchObject({ allowed: false, reason: "concurrency" });
  });
});
