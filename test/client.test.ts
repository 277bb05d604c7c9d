/** The TypeScript client against the real dispatcher (its fetch handler in this workerd). */
import { exports } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import readme from "../README.md?raw";
import exampleSource from "../docs/examples/client.ts?raw";
import { example } from "../docs/examples/client";
import { Cordon, CordonError } from "../src/client";
import { createTenant, type TestTenant } from "./helpers";

let tenant: TestTenant;
let sent: Request[];

function client(options: { apiKey?: string; maxRetries?: number } = {}): Cordon {
  return new Cordon({
    baseUrl: "https://cordon.test/",
    apiKey: options.apiKey ?? tenant.key,
    maxRetries: options.maxRetries ?? 2,
    fetch: (request) => {
      sent.push(request.clone());
      return exports.default.fetch(request);
    },
  });
}

beforeAll(async () => {
  tenant = await createTenant({ maxConcurrency: 1 });
});

describe("Cordon client", () => {
  it("runs the README example end to end", async () => {
    sent = [];
    const outcome = await example(client());
    expect(outcome).toMatchObject({ sum: 5, failure: "SANDBOX_TIMEOUT", stored: { status: "timed_out" } });
    expect(readme).toContain(exampleSource.trim());
  });

  it("throws CordonError with the execution's id, logs and metrics when a job fails", async () => {
    sent = [];
    const failure = await client()
      .execute.code({
        runtime: "edge",
        code: "export default async () => { console.warn('about to fail'); throw new Error('no') }",
      })
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(CordonError);
    const error = failure as CordonError;
    expect(error).toMatchObject({ code: "SANDBOX_RUNTIME_ERROR", status: 422 });
    expect(error.executionId).toMatch(/^exec_/);
    expect(error.logs?.[0]).toMatchObject({ level: "warn", message: "about to fail" });
    expect(error.metrics?.duration).toEqual(expect.any(Number));
  });

  it("reads the tenant's usage of its limits", async () => {
    sent = [];
    const usage = await client().usage();
    expect(usage).toMatchObject({ tenantId: tenant.id, concurrency: { limit: 1 }, storage: { usedBytes: 0 } });
    expect(new URL(sent[0]?.url ?? "").pathname).toBe("/v1/usage");
  });

  it("throws refusals with their code and no execution id", async () => {
    sent = [];
    const error = (await client({ apiKey: "ck_nope" })
      .executions.list()
      .catch((e: unknown) => e)) as CordonError;
    expect(error).toMatchObject({ code: "UNAUTHORIZED", status: 401, executionId: undefined });
  });

  it("retries a 429 after Retry-After, then succeeds", async () => {
    const slow = tenant.execute({
      code: "export default async () => { await new Promise((r) => setTimeout(r, 600)); return 'slow' }",
    });
    await new Promise((resolve) => setTimeout(resolve, 150));
    sent = [];
    const result = await client().execute.code({ runtime: "edge", code: "export default async () => 'after retry'" });
    expect(result.output).toBe("after retry");
    expect(sent.length).toBe(2);
    expect((await slow).status).toBe(200);
  });

  it("waits a second before retrying an answer without Retry-After (never at once)", async () => {
    // A 503 from a proxy in front of Cordon carries no Retry-After: the default wait of 1 s is over
    // this client's bound of 0.5 s, so it gives up instead of resending the job at once.
    let attempts = 0;
    const cordon = new Cordon({
      baseUrl: "https://cordon.test",
      apiKey: tenant.key,
      maxRetryDelayMs: 500,
      fetch: async () => {
        attempts++;
        return Response.json({ error: { code: "SANDBOX_UNAVAILABLE", message: "busy" } }, { status: 503 });
      },
    });
    await expect(cordon.execute.code({ runtime: "edge", code: "export default async () => 1" })).rejects.toMatchObject({
      status: 503,
    });
    expect(attempts).toBe(1);
  });

  it("never resends a job whose 503 answer is its recorded result (it was accepted)", async () => {
    let attempts = 0;
    const cordon = new Cordon({
      baseUrl: "https://cordon.test",
      apiKey: tenant.key,
      fetch: async () => {
        attempts++;
        const failed = { id: "exec_recorded", status: "failed", success: false };
        const error = { code: "SANDBOX_UNAVAILABLE", message: "a package could not be installed" };
        return Response.json({ ...failed, error }, { status: 503, headers: { "retry-after": "0" } });
      },
    });
    await expect(cordon.execute.code({ runtime: "node", code: "module.exports = () => 1" })).rejects.toMatchObject({
      status: 503,
      executionId: "exec_recorded",
    });
    expect(attempts).toBe(1);
  });

  it("does not retry when the wait would exceed its bound, and never resends a job on a network error", async () => {
    const limited = await createTenant({ rateLimit: 1 });
    const cordon = client({ apiKey: limited.key });
    await cordon.execute.code({ runtime: "edge", code: "export default async () => 1" });
    sent = [];
    const error = (await cordon.execute
      .code({ runtime: "edge", code: "export default async () => 1" })
      .catch((e: unknown) => e)) as CordonError;
    expect(error).toMatchObject({ code: "RATE_LIMITED", status: 429 });
    expect(sent.length).toBe(1);

    let attempts = 0;
    const broken = new Cordon({
      baseUrl: "https://cordon.test",
      apiKey: tenant.key,
      fetch: async () => {
        attempts++;
        throw new TypeError("connection reset");
      },
    });
    const lost = (await broken.execute
      .code({ runtime: "edge", code: "export default async () => 1" })
      .catch((e: unknown) => e)) as CordonError;
    expect(lost).toBeInstanceOf(CordonError);
    expect(lost).toMatchObject({ code: "CLIENT_NETWORK_ERROR", status: 0 });
    expect(lost.message).toContain("connection reset");
    expect(lost.cause).toBeInstanceOf(TypeError);
    expect(attempts).toBe(1);
    await expect(broken.executions.get("exec_x")).rejects.toMatchObject({ code: "CLIENT_NETWORK_ERROR" });
    expect(attempts).toBe(1 + 3);
  });

  it("keeps polling at a sane pace however short a poll it is given", async () => {
    const cordon = client();
    const submitted = await cordon.execute.submit({
      runtime: "edge",
      code: "export default async () => { await new Promise((r) => setTimeout(r, 800)); return 'done' }",
    });
    sent = [];
    const result = await cordon.executions.wait(submitted.id, { timeoutMs: 5_000, pollTimeoutMs: 0 });
    expect(result.output).toBe("done");
    // Polls of at least 100 ms over a job of 0.8 s: a handful of requests, not a busy loop.
    expect(sent.length).toBeLessThan(20);
  });

  it("throws on a success answer that is not Cordon's, and never sends an id a URL would resolve away", async () => {
    const urls: string[] = [];
    const proxied = new Cordon({
      baseUrl: "https://cordon.test",
      apiKey: tenant.key,
      fetch: async (request) => {
        urls.push(new URL(request.url).pathname);
        return new Response("<html>maintenance</html>", { status: 200, headers: { "content-type": "text/html" } });
      },
    });
    await expect(proxied.execute.code({ runtime: "edge", code: "export default async () => 1" })).rejects.toMatchObject(
      {
        code: "CLIENT_INVALID_RESPONSE",
        status: 200,
      },
    );
    const sentBefore = urls.length;
    await expect(proxied.executions.cancel("..")).rejects.toMatchObject({ code: "NOT_FOUND", status: 404 });
    expect(urls.length).toBe(sentBefore);
  });

  it("sends nothing for a signal aborted already, and keeps its reason", async () => {
    sent = [];
    const controller = new AbortController();
    const reason = new Error("the user left");
    controller.abort(reason);
    const cordon = client();
    for (const call of [
      () => cordon.execute.code({ runtime: "edge", code: "export default async () => 1" }, controller),
      () => cordon.executions.get("exec_x", controller),
      () => cordon.executions.wait("exec_x", { signal: controller.signal }),
      () => cordon.executions.delete("exec_x", controller),
      () => cordon.validate({ code: "export default 1" }, controller),
    ]) {
      const error = (await call().catch((e: unknown) => e)) as CordonError;
      expect(error).toBeInstanceOf(CordonError);
      expect(error).toMatchObject({ code: "CLIENT_ABORTED", status: 0 });
      expect(error.cause).toBe(reason);
    }
    expect(sent.length).toBe(0);
  });

  it("ends a fetch in flight and a backoff at once when the signal aborts, and leaves no listener", async () => {
    // A fetch that answers only when its request's signal aborts: the client hands it the signal.
    let toldToStop = 0;
    const hanging = new Cordon({
      baseUrl: "https://cordon.test",
      apiKey: tenant.key,
      fetch: (request) =>
        new Promise((_resolve, reject) => {
          request.signal.addEventListener("abort", () => {
            toldToStop++;
            reject(request.signal.reason);
          });
        }),
    });
    const inFlight = new AbortController();
    setTimeout(() => inFlight.abort(), 50);
    let started = Date.now();
    await expect(hanging.executions.get("exec_x", inFlight)).rejects.toMatchObject({ code: "CLIENT_ABORTED" });
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(toldToStop).toBe(1);

    // A 429 that asks for 5 s: the abort ends the sleep, not the end of the 5 s.
    let attempts = 0;
    const refused = new Cordon({
      baseUrl: "https://cordon.test",
      apiKey: tenant.key,
      fetch: async () => {
        attempts++;
        const error = { code: "RATE_LIMITED", message: "slow down" };
        return Response.json({ error }, { status: 429, headers: { "retry-after": "5" } });
      },
    });
    const backoff = new AbortController();
    setTimeout(() => backoff.abort(), 50);
    started = Date.now();
    await expect(refused.executions.list({}, backoff)).rejects.toMatchObject({ code: "CLIENT_ABORTED" });
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(attempts).toBe(1);

    // Every listener the client adds to a caller's signal goes again, after a backoff that ran out too.
    const signal = new AbortController().signal;
    let added = 0;
    let removed = 0;
    const add = signal.addEventListener.bind(signal);
    const remove = signal.removeEventListener.bind(signal);
    signal.addEventListener = (...args: Parameters<typeof add>) => {
      added++;
      add(...args);
    };
    signal.removeEventListener = (...args: Parameters<typeof remove>) => {
      removed++;
      remove(...args);
    };
    let answered = 0;
    const retried = new Cordon({
      baseUrl: "https://cordon.test",
      apiKey: tenant.key,
      fetch: async () => {
        if (answered++ === 0) {
          const error = { code: "RATE_LIMITED", message: "slow down" };
          return Response.json({ error }, { status: 429, headers: { "retry-after": "0" } });
        }
        return Response.json({ executions: [], nextCursor: null });
      },
    });
    await retried.executions.list({}, { signal });
    expect(answered).toBe(2);
    // Two fetches and the backoff between them.
    expect(added).toBe(3);
    expect(removed).toBe(added);
  });

  it("stops a wait at once when the signal aborts", async () => {
    const cordon = client();
    const submitted = await cordon.execute.submit({
      runtime: "edge",
      code: "export default async () => { await new Promise((r) => setTimeout(r, 1500)); return 'done' }",
    });
    const controller = new AbortController();
    const reason = new Error("enough");
    setTimeout(() => controller.abort(reason), 300);
    const started = Date.now();
    const error = (await cordon.executions
      .wait(submitted.id, { pollTimeoutMs: 100, signal: controller.signal })
      .catch((e: unknown) => e)) as CordonError;
    expect(error).toMatchObject({ code: "CLIENT_ABORTED", status: 0 });
    expect(error.cause).toBe(reason);
    expect(Date.now() - started).toBeLessThan(1_000);
    // The job itself goes on; it is the caller's to cancel. Let it end before the next test.
    expect((await cordon.executions.wait(submitted.id)).output).toBe("done");
  });

  it("retries a request that outlives requestTimeoutMs when it is idempotent, never a submitted job", async () => {
    let attempts = 0;
    const stalled = new Cordon({
      baseUrl: "https://cordon.test",
      apiKey: tenant.key,
      requestTimeoutMs: 50,
      fetch: async (request) => {
        attempts++;
        // The first two answers never come; the third does.
        if (attempts <= 2 || request.method === "POST") return new Promise<Response>(() => {});
        return Response.json({ executions: [], nextCursor: null });
      },
    });
    await expect(stalled.executions.list()).resolves.toMatchObject({ executions: [] });
    expect(attempts).toBe(3);

    attempts = 0;
    const error = (await stalled.execute
      .code({ runtime: "edge", code: "export default async () => 1" })
      .catch((e: unknown) => e)) as CordonError;
    expect(error).toBeInstanceOf(CordonError);
    expect(error).toMatchObject({ code: "CLIENT_REQUEST_TIMEOUT", status: 0 });
    expect(attempts).toBe(1);

    attempts = 0;
    const never = new Cordon({
      baseUrl: "https://cordon.test",
      apiKey: tenant.key,
      requestTimeoutMs: 50,
      fetch: () => {
        attempts++;
        return new Promise<Response>(() => {});
      },
    });
    await expect(never.executions.get("exec_x")).rejects.toMatchObject({ code: "CLIENT_REQUEST_TIMEOUT" });
    expect(attempts).toBe(3);

    // With both, the caller's abort is an abort, not a timeout, and is not retried.
    attempts = 0;
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 10);
    await expect(never.executions.get("exec_x", controller)).rejects.toMatchObject({ code: "CLIENT_ABORTED" });
    expect(attempts).toBe(1);
  });

  it("gives a wait's poll its poll time on top of requestTimeoutMs", async () => {
    const cordon = new Cordon({
      baseUrl: "https://cordon.test",
      apiKey: tenant.key,
      requestTimeoutMs: 200,
      // No retries: a timed-out poll would otherwise be retried until the job ends, and pass anyway.
      maxRetries: 0,
      fetch: (request) => exports.default.fetch(request),
    });
    const submitted = await cordon.execute.submit({
      runtime: "edge",
      code: "export default async () => { await new Promise((r) => setTimeout(r, 800)); return 'done' }",
    });
    expect((await cordon.executions.wait(submitted.id, { pollTimeoutMs: 5_000 })).output).toBe("done");
  });

  it("fails a job with the same code and status through execute.code and through submit + wait", async () => {
    const cordon = client();
    for (const [job, expected] of [
      [{ runtime: "edge", code: "export default async () => { throw new Error('no') }" }, 422],
      [{ runtime: "edge", code: "export default async () => { for (;;) {} }", timeout: 300 }, 408],
    ] as const) {
      const direct = (await cordon.execute.code(job).catch((e: unknown) => e)) as CordonError;
      const submitted = await cordon.execute.submit(job);
      const waited = (await cordon.executions.wait(submitted.id).catch((e: unknown) => e)) as CordonError;
      expect(waited).toBeInstanceOf(CordonError);
      expect({ code: waited.code, status: waited.status }).toEqual({ code: direct.code, status: direct.status });
      expect(waited.status).toBe(expected);
      expect(waited.executionId).toBe(submitted.id);
    }
  });

  it("resolves a DELETE whose answer was lost once its retry finds the execution gone", async () => {
    const cordon = client();
    const { id } = await cordon.execute.code({ runtime: "edge", code: "export default async () => 1" });
    let deletes = 0;
    const dropping = new Cordon({
      baseUrl: "https://cordon.test",
      apiKey: tenant.key,
      fetch: async (request) => {
        const response = await exports.default.fetch(request);
        // The first DELETE reaches the service and does its work; only its answer is lost.
        if (request.method === "DELETE" && deletes++ === 0) throw new TypeError("connection reset");
        return response;
      },
    });
    await expect(dropping.executions.delete(id)).resolves.toBeUndefined();
    expect(deletes).toBe(2);
    await expect(cordon.executions.get(id)).rejects.toMatchObject({ code: "NOT_FOUND", status: 404 });
    // Without a lost answer, an unknown id is still NOT_FOUND.
    await expect(dropping.executions.delete(id)).rejects.toMatchObject({ code: "NOT_FOUND", status: 404 });
  });

  it("lists and validates with typed queries", async () => {
    sent = [];
    const page = await client().executions.list({ limit: 1 });
    expect(page.executions).toHaveLength(1);
    expect(new URL(sent[0]?.url ?? "").search).toBe("?limit=1");
    const report = await client().validate({ code: "export default (" });
    expect(report).toMatchObject({ valid: false, problems: [{ rule: "syntax-error" }] });
  });
});
