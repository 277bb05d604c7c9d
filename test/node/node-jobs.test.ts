/**
 * Node jobs through the dispatcher: the same API, result schema and error codes as edge jobs, run by
 * the local sandbox host under bubblewrap (its own suite, host/test, covers every kernel limit).
 */
import { beforeAll, describe, expect, it } from "vitest";
import { call, createTenant, type TestTenant } from "../helpers";

let tenant: TestTenant;
const node = (job: Record<string, unknown>) => tenant.execute({ runtime: "node", ...job });

beforeAll(async () => {
  tenant = await createTenant({ maxTrustLevel: "high" });
});

describe("node jobs", () => {
  it("runs a CommonJS function with its input, with console logs and stdout", async () => {
    const { status, body } = await node({
      code: "const path = require('node:path'); module.exports = async function (context) { console.warn('joining'); process.stdout.write('raw'); return path.join(...context.input) }",
      input: ["a", "b", "c.txt"],
    });
    expect(status).toBe(200);
    expect(body).toMatchObject({ runtime: "node", status: "succeeded", output: "a/b/c.txt", stdout: "raw" });
    expect(body.logs?.[0]).toMatchObject({ level: "warn", message: "joining" });
    // Cold or warm depends on which jobs of other files the shared test host ran before (its pool refills).
    expect(body.metrics?.coldStart).toEqual(expect.any(Boolean));
    expect(body.metrics?.cpuTime).toEqual(expect.any(Number));
    expect(body.limits).toMatchObject({ timeoutMs: 30_000, memoryMb: 512, maxSubprocesses: 8 });
  });

  it("runs an ES module and test cases compared by the dispatcher", async () => {
    const { body } = await node({
      code: "export default async function ({ input }) { return input.toUpperCase() }",
      test: {
        cases: [
          { input: "a", expected: "A" },
          { input: "b", expected: "c" },
        ],
      },
    });
    expect(body.tests?.cases.map((testCase) => testCase.passed)).toEqual([true, false]);
  });

  it("reports a thrown error as SANDBOX_RUNTIME_ERROR", async () => {
    const { status, body } = await node({ code: "module.exports = async () => { throw new RangeError('nope') }" });
    expect(status).toBe(422);
    expect(body.error).toMatchObject({ code: "SANDBOX_RUNTIME_ERROR", name: "RangeError" });
  });

  it("stops an infinite loop at its timeout with SANDBOX_TIMEOUT", async () => {
    const started = Date.now();
    const { status, body } = await node({ code: "module.exports = async () => { for (;;) {} }", timeout: 1000 });
    expect(status).toBe(408);
    expect(body.error?.code).toBe("SANDBOX_TIMEOUT");
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it("ends a memory bomb with SANDBOX_MEMORY_LIMIT", async () => {
    const { body } = await node({
      code: "module.exports = async () => { const hoard = []; for (;;) hoard.push(Buffer.alloc(16 * 1024 * 1024, 1)) }",
      memory: 128,
    });
    expect(body.error).toMatchObject({ code: "SANDBOX_MEMORY_LIMIT", limit: "memoryMb" });
  });

  it("refuses subprocesses beyond the limit, the host's secrets and the network", async () => {
    const spawned = await node({
      code: "const { spawnSync } = require('node:child_process'); module.exports = async () => spawnSync(process.execPath, ['-e', 'setTimeout(() => {}, 5000)']).status",
      limits: { maxSubprocesses: 0 },
    });
    expect(spawned.body.error).toMatchObject({ code: "SANDBOX_SECURITY_VIOLATION", limit: "limits.maxSubprocesses" });

    const probes = await node({
      code: `const fs = require('node:fs'); const net = require('node:net');
        module.exports = async () => {
          const read = (path) => { try { return fs.readFileSync(path, 'utf8').slice(0, 40) } catch (error) { return error.code } };
          const connected = await new Promise((resolve) => {
            const socket = net.connect(80, '1.1.1.1', () => resolve('connected'));
            socket.on('error', (error) => resolve(error.code));
          });
          return { shadow: read('/etc/shadow'), secret: process.env.CORDON_HOST_TOKEN ?? null, connected };
        }`,
    });
    expect(probes.body.output).toMatchObject({ shadow: "ENOENT", secret: null });
    expect((probes.body.output as { connected: string }).connected).not.toBe("connected");
  });

  it("can be submitted, and cancelled with its processes", async () => {
    const submitted = await node({
      code: "module.exports = async () => { for (;;) {} }",
      async: true,
      timeout: 20_000,
    });
    expect(submitted.status).toBe(202);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const cancelled = await call(`/v1/executions/${submitted.body.id}/cancel`, { method: "POST", key: tenant.key });
    expect(cancelled.body).toMatchObject({
      runtime: "node",
      status: "cancelled",
      error: { code: "SANDBOX_CANCELLED" },
    });
  });

  it("is refused at the untrusted level, and node-only limits are refused on edge jobs", async () => {
    const untrusted = await node({ code: "module.exports = async () => 1", trustLevel: "untrusted" });
    expect(untrusted.status).toBe(403);
    expect(untrusted.body.error?.code).toBe("RUNTIME_NOT_ALLOWED");
    const edge = await tenant.execute({ code: "export default async () => 1", limits: { maxSubprocesses: 2 } });
    expect(edge.status).toBe(422);
  });

  it("reports a syntax error before running anything", async () => {
    const { status, body } = await node({ code: "module.exports = async () => {" });
    expect(status).toBe(422);
    expect(body.error?.code).toBe("VALIDATION_ERROR");
  });
});
