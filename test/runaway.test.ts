/**
 * Runaway jobs: each must end in SANDBOX_TIMEOUT or SANDBOX_MEMORY_LIMIT within timeout + 2 s, with
 * a stored record, while the dispatcher keeps answering other requests. The timing bound here is a
 * correctness property (a job must not outlive its deadline), not a speed target.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { call as callRoute, createTenant, type TestTenant } from "./helpers";

// A medium-trust tenant: its jobs run in their own runner pool (cordon), apart from other test files.
let tenant: TestTenant;
const execute = (job: Record<string, unknown>) => tenant.execute(job);
const call = (path: string) => (path === "/healthz" ? callRoute(path) : tenant.get(path));

beforeAll(async () => {
  tenant = await createTenant({ maxTrustLevel: "medium" });
});

const TIMEOUT_MS = 1_000;
const GRACE_MS = 2_000;

const RUNAWAYS: [name: string, code: string][] = [
  ["an infinite for loop", "export default async () => { for (;;) {} }"],
  ["an infinite while loop", "export default async () => { while (true) {} }"],
  ["an infinite do-while loop without braces", "export default async () => { let i = 0; do i++; while (true) }"],
  ["a loop at module top level", "while (true) {}\nexport default async () => 1"],
  ["a loop that swallows the timeout", "export default async () => { for (;;) { try { for (;;) {} } catch {} } }"],
  [
    "infinite recursion that catches stack overflows",
    "export default async () => { function f() { try { f() } catch { f() } } f() }",
  ],
  [
    "an endless microtask chain",
    "export default async () => { const go = () => { queueMicrotask(go) }; go(); await new Promise(() => {}) }",
  ],
  [
    "an endless promise chain",
    "export default async () => { const go = () => Promise.resolve().then(go); go(); await new Promise(() => {}) }",
  ],
  ["a promise that never settles", "export default async () => { await new Promise(() => {}) }"],
  [
    "an endless timer chain",
    "export default async () => { const go = () => setTimeout(go, 0); go(); await new Promise(() => {}) }",
  ],
  ["a catastrophic regexp", "export default async () => /^(a+)+$/.test('a'.repeat(40) + '!')"],
  ["a catastrophic regexp with a backreference", "export default async () => /^(a*)*\\1b$/.test('a'.repeat(5000))"],
  [
    "a native sort of a huge array",
    "export default async () => { const a = Array.from({ length: 5e6 }, (_, i) => -i); for (;;) a.sort() }",
  ],
];

describe("runaway jobs end within timeout + 2 s", () => {
  it.each(RUNAWAYS)("%s", async (_name, code) => {
    const started = Date.now();
    const { status, body } = await execute({ code, timeout: TIMEOUT_MS });
    const elapsed = Date.now() - started;

    expect(["SANDBOX_TIMEOUT", "SANDBOX_MEMORY_LIMIT"]).toContain(body.error?.code);
    expect([408, 422]).toContain(status);
    expect(elapsed).toBeLessThan(TIMEOUT_MS + GRACE_MS);
    const stored = await call(`/v1/executions/${body.id}`);
    expect(stored.body.error?.code).toBe(body.error?.code);
  });

  it("a memory bomb ends in SANDBOX_MEMORY_LIMIT and is stored", async () => {
    const { status, body } = await execute({
      code: "export default async () => { const hoard = []; for (;;) hoard.push(new Array(1e6).fill(1)) }",
      timeout: 10_000,
    });
    expect(status).toBe(422);
    expect(body.error?.code).toBe("SANDBOX_MEMORY_LIMIT");
    expect((await call(`/v1/executions/${body.id}`)).body.status).toBe("failed");
  });

  it("reports where in the job's code the guard stopped it", async () => {
    const { body } = await execute({
      code: "export default async () => {\n  let n = 0;\n  while (true) {\n    n++;\n  }\n}",
      timeout: 300,
    });
    expect(body.error).toMatchObject({ code: "SANDBOX_TIMEOUT", line: 3 });
  });

  it("keeps serving other requests while a job is wedged, and after", async () => {
    const wedged = execute({ code: "export default async () => /^(a*)*\\1b$/.test('a'.repeat(5000))", timeout: 2_000 });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const during = await Promise.all([call("/healthz"), execute({ code: "export default async () => 'still here'" })]);
    expect(during[0].status).toBe(200);
    expect(during[1].body.output).toBe("still here");
    expect((await wedged).body.error?.code).toBe("SANDBOX_TIMEOUT");
    const after = await execute({ code: "export default async (n) => n + 1", input: 41 });
    expect(after.body.output).toBe(42);
  });
});

describe("a burst of runaway jobs past the pool's runners", () => {
  // Untrusted jobs run in a cordon of their own: 2 runners in the tests, no other file uses it.
  const hostStats = async () => {
    const response = await fetch(new URL("/healthz", env.CORDON_HOST_URL));
    type Stats = { size: number; idle: number; replaced: number; waiting: number };
    return ((await response.json()) as { edge: Record<string, Stats> }).edge.untrusted!;
  };
  const runaway = "export default async () => /^(a+)+$/.test('a'.repeat(40) + '!')";

  it("ends the jobs that could not start by their deadline without running them, so nothing runs on after its request", async () => {
    const burst = await createTenant({ maxTrustLevel: "untrusted", maxConcurrency: 8 });
    const before = await hostStats();
    const jobs = Array.from({ length: 6 }, () => burst.execute({ code: runaway, timeout: 1_000 }));
    const results = await Promise.all(jobs);
    for (const { body } of results) expect(body.error?.code).toBe("SANDBOX_TIMEOUT");
    const neverStarted = results.filter(({ body }) => /never started/.test(body.error?.message ?? ""));
    // Two ran (and were killed); the rest waited until their deadline and were dropped, not run later.
    expect(neverStarted.length).toBeGreaterThanOrEqual(4);
    const after = await hostStats();
    expect(after.waiting).toBe(0);
    expect(after.replaced - before.replaced).toBeLessThanOrEqual(6 - neverStarted.length);
  });

  it("refuses a job at once, without queueing it, while 16 jobs per runner already wait", async () => {
    const crowd = await createTenant({ maxTrustLevel: "untrusted", maxConcurrency: 50 });
    const poll = async (done: (stats: Awaited<ReturnType<typeof hostStats>>) => boolean) => {
      while (!done(await hostStats())) await new Promise((resolve) => setTimeout(resolve, 50));
    };
    // The runners killed by the test above are back, then both are wedged.
    await poll((stats) => stats.idle === stats.size);
    const size = (await hostStats()).size;
    const finished: string[] = [];
    const wedged = Array.from({ length: size }, () =>
      crowd.execute({ code: runaway, timeout: 2_000 }).then((result) => (finished.push("wedged"), result)),
    );
    await poll((stats) => stats.idle === 0);
    const capacity = size * 16;
    const queued = Array.from({ length: capacity + 2 }, (_, n) =>
      crowd
        .execute({ code: "export default async (n) => n", input: n, timeout: 5_000 })
        .then((result) => (finished.push(result.body.error?.code ?? "ok"), result)),
    );
    const results = await Promise.all(queued);
    await Promise.all(wedged);
    const refused = results.filter(({ body }) => body.error?.code === "SANDBOX_UNAVAILABLE");
    expect(refused).toHaveLength(2);
    for (const { status, body } of refused) {
      expect(status).toBe(503);
      expect(body.error?.message).toContain(`all ${size} runners of this cordon are busy and ${capacity} jobs wait`);
    }
    // Refused at once: both answered before the jobs that held the runners ended.
    expect(finished.slice(0, 2)).toEqual(["SANDBOX_UNAVAILABLE", "SANDBOX_UNAVAILABLE"]);
    // The queued ones ran once a runner was back, or waited until their deadline; none was lost.
    for (const [n, { body }] of results.entries()) {
      if (body.error?.code === "SANDBOX_UNAVAILABLE") continue;
      if (body.success) expect(body.output).toBe(n);
      else
        expect(body.error).toMatchObject({ code: "SANDBOX_TIMEOUT", message: expect.stringMatching(/never started/) });
    }
  });
});
