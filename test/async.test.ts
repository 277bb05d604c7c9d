/**
 * Asynchronous jobs and their ExecutionTracker: submit, wait, get, cancel, delete, and the deadline
 * alarm that stores a result when no runner ever answers.
 */
import { env, exports } from "cloudflare:workers";
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import type { ExecutionTracker, JobTicket } from "../src/durable/execution-tracker";
import { prepareEdgeJob } from "../src/edge/prepare";
import { ExecutionRequest } from "../src/schemas";
import { call, createTenant, expectHiddenFrom, type TestTenant } from "./helpers";

let tenant: TestTenant;
const post = (path: string) => call(path, { method: "POST", key: tenant.key });

beforeAll(async () => {
  tenant = await createTenant({ maxTrustLevel: "medium" });
});

describe("async jobs", () => {
  it("answers 202 at once, then wait and GET return the stored result", async () => {
    const submitted = await tenant.execute({
      code: "export default async (n) => { await new Promise((r) => setTimeout(r, 300)); return n * 2 }",
      input: 21,
      async: true,
    });
    expect(submitted.status).toBe(202);
    expect(submitted.body).toMatchObject({ status: "running", runtime: "edge", trustLevel: "medium" });
    expect(submitted.headers.get("location")).toBe(`/v1/executions/${submitted.body.id}`);

    const waited = await post(`/v1/executions/${submitted.body.id}/wait?timeout=5000`);
    expect(waited.status).toBe(200);
    expect(waited.body).toMatchObject({ status: "succeeded", output: 42 });
    expect((await tenant.get(`/v1/executions/${submitted.body.id}`)).body).toEqual(waited.body);
  });

  it("keeps a ticket larger than a Durable Object's 2 MB value limit in parts, and runs it intact", async () => {
    // The ticket holds the input three times (request, inputs, the built request) besides the code,
    // its instrumented copy and source map: 200 000 emoji (800 kB of UTF-8) make it ≈ 2.5 MB.
    const input = "🙂".repeat(200_000);
    const submitted = await tenant.execute({
      code: `export default async (s) => { await new Promise((r) => setTimeout(r, 500)); return [...s].every((c) => c === "🙂") ? [...s].length : -1 }`,
      input,
      async: true,
    });
    expect(submitted.status).toBe(202);
    const stub = env.EXECUTION_TRACKER.get(env.EXECUTION_TRACKER.idFromName(submitted.body.id!));
    const largest = await runInDurableObject(stub, (_instance: ExecutionTracker, state) => {
      const sizes = state.storage.sql
        .exec<{ bytes: number }>(
          `SELECT length(CAST(ticket_json AS BLOB)) AS bytes FROM job
           UNION ALL SELECT length(CAST(text AS BLOB)) FROM ticket_part`,
        )
        .toArray();
      return { parts: sizes.length - 1, bytes: Math.max(...sizes.map((row) => row.bytes)) };
    });
    expect(largest.parts).toBeGreaterThan(1);
    expect(largest.bytes).toBeLessThan(2_000_000);

    const waited = await post(`/v1/executions/${submitted.body.id}/wait?timeout=5000`);
    expect(waited.body).toMatchObject({ status: "succeeded", output: 200_000 });
  });

  it("answers a wait that outlasts its timeout with 202 and the progress", async () => {
    const submitted = await tenant.execute({
      code: "export default async () => { await new Promise((r) => setTimeout(r, 1500)); return 'late' }",
      async: true,
    });
    const early = await post(`/v1/executions/${submitted.body.id}/wait?timeout=100`);
    expect(early.status).toBe(202);
    expect(early.body.status).toBe("running");
    expect((await tenant.get(`/v1/executions/${submitted.body.id}`)).body.status).toBe("running");
    // An empty timeout is the default (10 s), not 0 ms.
    const late = await post(`/v1/executions/${submitted.body.id}/wait?timeout=`);
    expect(late.body).toMatchObject({ status: "succeeded", output: "late" });
  });

  it("cancels a running job: its runner is stopped and the result says cancelled", async () => {
    const submitted = await tenant.execute({
      code: "export default async () => { for (;;) {} }",
      async: true,
      timeout: 8000,
    });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const started = Date.now();
    const cancelled = await post(`/v1/executions/${submitted.body.id}/cancel`);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(cancelled.status).toBe(200);
    expect(cancelled.body).toMatchObject({ status: "cancelled", success: false, error: { code: "SANDBOX_CANCELLED" } });
    expect((await tenant.get(`/v1/executions/${submitted.body.id}`)).body.status).toBe("cancelled");
    // The cordon's runners keep serving.
    expect((await tenant.execute({ code: "export default async () => 'next'" })).body.output).toBe("next");
  });

  it("keeps a finished job's result when it is cancelled afterwards", async () => {
    const finished = await tenant.execute({ code: "export default async () => 'done'" });
    const cancelled = await post(`/v1/executions/${finished.body.id}/cancel`);
    expect(cancelled.body).toMatchObject({ status: "succeeded", output: "done" });
  });

  it("deletes a finished job's stored result, and refuses to delete a running one", async () => {
    const running = await tenant.execute({
      code: "export default async () => { await new Promise((r) => setTimeout(r, 800)); return 1 }",
      async: true,
    });
    const refused = await call(`/v1/executions/${running.body.id}`, { method: "DELETE", key: tenant.key });
    expect(refused.status).toBe(409);
    expect(refused.body.error?.code).toBe("EXECUTION_NOT_FINISHED");
    await post(`/v1/executions/${running.body.id}/wait?timeout=5000`);

    const deleted = await exports.default.fetch(
      new Request(`https://cordon.test/v1/executions/${running.body.id}`, {
        method: "DELETE",
        headers: { authorization: `Bearer ${tenant.key}` },
      }),
    );
    expect(deleted.status).toBe(204);
    expect((await tenant.get(`/v1/executions/${running.body.id}`)).status).toBe(404);
  });

  it("hides another tenant's job from get, wait, cancel and delete", async () => {
    const mine = await tenant.execute({ code: "export default async () => 'private'", async: true });
    const stranger = await createTenant();
    await expectHiddenFrom(stranger, String(mine.body.id));
    expect((await post(`/v1/executions/${mine.body.id}/wait?timeout=5000`)).body.output).toBe("private");
  });
});

describe("the tracker's deadline alarm", () => {
  it("stores SANDBOX_TIMEOUT for a job no runner ever answered", async () => {
    const id = `exec_${"ab".repeat(16)}`;
    const job = ExecutionRequest.parse({ runtime: "edge", code: "export default async () => 1", timeout: 1000 });
    const acceptedAt = Date.now() - 60_000;
    const prepared = prepareEdgeJob(job, { executionId: id, trustLevel: "medium", acceptedAt });
    const ticket: JobTicket = {
      job,
      prepared,
      tenantId: tenant.id,
      acceptedAt,
      codeSha256: "0".repeat(64),
      storageLimitMb: 1,
    };
    const stub = env.EXECUTION_TRACKER.get(env.EXECUTION_TRACKER.idFromName(id));

    // The job was recorded as running, and then nothing answered (as when a dispatcher dies mid-job).
    await runInDurableObject(stub, async (_instance: ExecutionTracker, state) => {
      state.storage.sql.exec(
        "INSERT INTO job (id, tenant_id, status, ticket_json) VALUES (?, ?, 'running', ?)",
        id,
        tenant.id,
        JSON.stringify(ticket),
      );
      await state.storage.setAlarm(Date.now() + 60_000);
    });
    expect(await runDurableObjectAlarm(stub)).toBe(true);

    const stored = await tenant.get(`/v1/executions/${id}`);
    expect(stored.body).toMatchObject({ status: "timed_out", error: { code: "SANDBOX_TIMEOUT" } });
  });
});

describe("a failed write of an async result to the execution log", () => {
  it("keeps the result and the slot, and the alarm writes it later", async () => {
    const one = await createTenant({ maxConcurrency: 1 });
    // D1 refuses this tenant's log rows once (a transient failure).
    await env.DB.prepare(
      `CREATE TRIGGER fail_log_${one.id} BEFORE INSERT ON executions WHEN NEW.tenant_id = '${one.id}'
       BEGIN SELECT RAISE(ABORT, 'transient D1 failure'); END`,
    ).run();
    const submitted = await one.execute({ code: "export default async () => 'kept'", async: true });
    const id = String(submitted.body.id);
    const waited = await call(`/v1/executions/${id}/wait?timeout=5000`, { method: "POST", key: one.key });
    await env.DB.prepare(`DROP TRIGGER fail_log_${one.id}`).run();
    expect(waited.body).toMatchObject({ id, status: "succeeded", output: "kept" });

    // Not in the log yet: the tracker still holds the job, its result and its slot.
    expect(await env.DB.prepare("SELECT id FROM executions WHERE id = ?").bind(id).first()).toBeNull();
    expect((await one.get(`/v1/executions/${id}`)).body).toMatchObject({ status: "succeeded", output: "kept" });
    expect((await one.execute({ code: "export default async () => 1" })).status).toBe(429);

    const stub = env.EXECUTION_TRACKER.get(env.EXECUTION_TRACKER.idFromName(id));
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await env.DB.prepare("SELECT id FROM executions WHERE id = ?").bind(id).first()).toMatchObject({ id });
    expect((await one.execute({ code: "export default async () => 1" })).status).toBe(200);
    const listed = await one.get("/v1/executions");
    expect((listed.body.executions as { id: string }[]).map((row) => row.id)).toContain(id);
  });
});
