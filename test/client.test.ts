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
    await expect(broken.execute.code({ runtime: "edge", code: "export default async () => 1" })).rejects.toThrow(
      "connection reset",
    );
    expect(attempts).toBe(1);
    await expect(broken.executions.get("exec_x")).rejects.toThrow("connection reset");
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

  it("lists and validates with typed queries", async () => {
    sent = [];
    const page = await client().executions.list({ limit: 1 });
    expect(page.executions).toHaveLength(1);
    expect(new URL(sent[0]?.url ?? "").search).toBe("?limit=1");
    const report = await client().validate({ code: "export default (" });
    expect(report).toMatchObject({ valid: false, problems: [{ rule: "syntax-error" }] });
  });
});
