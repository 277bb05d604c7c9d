/**
 * The SandboxService entrypoint: directly over RPC, and through workers/example-client running as an
 * auxiliary Worker bound to it (a real service binding).
 */
import { env, exports } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import readme from "../README.md?raw";
import exampleWorker from "../workers/example-client/index.js?raw";
import type { SandboxServiceApi } from "../src/rpc/sandbox-service";
import { MAX_JSON_DEPTH } from "../src/json-depth";
import { hashKey } from "../src/tenants/keys";
import { createTenant as createTenantRow, insertKey } from "../src/tenants/store";
import { call, createTenant, type TestTenant } from "./helpers";

/** The key the example client is configured with (vitest.config.ts), provisioned here out of band. */
const EXAMPLE_CLIENT_KEY = "ck_exampleclnt0_examplekeyexamplekeyexamplekey00";

const service = exports.SandboxService as unknown as SandboxServiceApi;

async function runThroughExampleClient(body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await env.EXAMPLE_CLIENT.fetch("https://example-client/run", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

describe("through the example client Worker (service binding)", () => {
  beforeAll(async () => {
    const tenant = await createTenantRow(env.DB, {
      name: "example client",
      maxTrustLevel: "medium",
      rateLimitPerHour: 3,
    });
    const prefix = EXAMPLE_CLIENT_KEY.slice(0, 15);
    await insertKey(env.DB, { tenantId: tenant.id, prefix, hash: await hashKey(EXAMPLE_CLIENT_KEY) });
  });

  it("runs a job and returns its output", async () => {
    const { status, body } = await runThroughExampleClient({
      code: "export default async (input) => input.words.join(' ')",
      input: { words: ["over", "rpc"] },
    });
    expect(status).toBe(200);
    expect(body).toMatchObject({ output: "over rpc", success: true, error: null, rate: { limit: 3 } });
  });

  it("carries a failed job's error code back as data", async () => {
    const { body } = await runThroughExampleClient({
      code: "export default async () => { throw new TypeError('bad') }",
    });
    expect(body).toMatchObject({ success: false, error: { code: "SANDBOX_RUNTIME_ERROR", name: "TypeError" } });
  });

  it("is rate limited like HTTPS", async () => {
    // Two jobs ran above; the tenant's limit is 3 per hour.
    expect((await runThroughExampleClient({ code: "export default async () => 1" })).status).toBe(200);
    const { status, body } = await runThroughExampleClient({ code: "export default async () => 1" });
    expect(status).toBe(502);
    expect(body).toMatchObject({ ok: false, error: { code: "RATE_LIMITED", limit: "tenant_rate" } });
  });
});

describe("SandboxService methods", () => {
  let tenant: TestTenant;
  beforeAll(async () => {
    tenant = await createTenant({ maxTrustLevel: "low" });
  });

  it("refuses a missing or wrong key as data", async () => {
    expect(await service.get("", "exec_x")).toMatchObject({ ok: false, error: { code: "UNAUTHORIZED" } });
    const wrong = await service.execute("ck_000000000000_00000000000000000000000000000000", {
      runtime: "edge",
      code: "export default () => 1",
    });
    expect(wrong).toMatchObject({ ok: false, error: { code: "UNAUTHORIZED" } });
  });

  it("validates arguments with the same schemas as HTTP", async () => {
    const reply = await service.execute(tenant.key, { runtime: "edge", code: "" });
    expect(reply).toMatchObject({ ok: false, error: { code: "VALIDATION_ERROR" } });
  });

  it("refuses arguments nested deeper than a request body may be, as data", async () => {
    const nested = (levels: number) => {
      let value: unknown = [];
      for (let i = 1; i < levels; i++) value = [value];
      return value;
    };
    // Much deeper does not leave the caller: structured clone overflows its own stack first.
    for (const levels of [MAX_JSON_DEPTH, 2_000]) {
      const reply = await service.execute(tenant.key, {
        runtime: "edge",
        code: "export default () => 1",
        input: nested(levels) as never,
      });
      expect(reply).toMatchObject({ ok: false, error: { code: "VALIDATION_ERROR", issues: [{ code: "too_deep" }] } });
    }
    // Its own tenant: the listing test below expects this tenant to have run one job.
    const deepest = await service.execute((await createTenant()).key, {
      runtime: "edge",
      code: "export default (x) => JSON.stringify(x).length",
      input: nested(MAX_JSON_DEPTH - 1) as never,
    });
    expect(deepest).toMatchObject({ ok: true, value: { output: 2 * (MAX_JSON_DEPTH - 1) } });
  });

  it("refuses arguments holding one object twice, which no JSON can, before walking them", async () => {
    // 40 levels, each holding the level below twice: 2^40 paths through 40 objects.
    let doubled: unknown = [];
    for (let i = 0; i < 40; i++) doubled = [doubled, doubled];
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    for (const input of [doubled, cyclic]) {
      const reply = await service.execute(tenant.key, {
        runtime: "edge",
        code: "export default () => 1",
        input: input as never,
      });
      expect(reply).toMatchObject({
        ok: false,
        error: { code: "VALIDATION_ERROR", issues: [{ code: "shared_object" }] },
      });
    }
  });

  it("reads arguments as the JSON body they stand for: holes and undefined as JSON writes them, size as HTTPS bounds it", async () => {
    // A sparse array is a few bytes to send; zod used to build an issue per hole (10^5 of them
    // exhausted the dispatcher's heap). As JSON it is 10^5 nulls, a valid input.
    const own = await createTenant();
    const sparse = await service.execute(own.key, {
      runtime: "edge",
      code: "export default (input) => [input.length, input[0]]",
      input: new Array(100_000) as never,
    });
    expect(sparse).toMatchObject({ ok: true, value: { output: [100_000, null] } });

    // A hole is five characters of JSON: a long sparse array is refused by its length, before any
    // JSON is written.
    const holes = await service.execute(own.key, {
      runtime: "edge",
      code: "export default () => 1",
      input: new Array(1_000_000) as never,
    });
    expect(holes).toMatchObject({ ok: false, error: { code: "PAYLOAD_TOO_LARGE" } });

    for (const method of ["execute", "submit"] as const) {
      const large = await service[method](own.key, {
        runtime: "edge",
        code: "export default () => 1",
        input: "x".repeat(2 * 1024 * 1024),
      });
      expect(large).toMatchObject({ ok: false, error: { code: "PAYLOAD_TOO_LARGE" } });
    }
  });

  it("refuses a __proto__ key, which every object built from the input would drop, over RPC and HTTPS", async () => {
    const input = JSON.parse('{"__proto__": {"admin": true}, "b": 2}') as Record<string, unknown>;
    const reply = await service.execute(tenant.key, {
      runtime: "edge",
      code: "export default (i) => i",
      input: input as never,
    });
    expect(reply).toMatchObject({ ok: false, error: { code: "VALIDATION_ERROR", issues: [{ code: "reserved_key" }] } });
    // Over HTTPS, spelled out or with an escape JSON.parse decodes into the same key.
    for (const spelled of ['"__proto__"', '"\\u005f_proto__"']) {
      const { status, body } = await call("/v1/executions", {
        method: "POST",
        key: tenant.key,
        headers: { "content-type": "application/json" },
        body: `{"runtime":"edge","code":"export default (i) => i","metadata":{${spelled}:"x","m":"1"}}`,
      });
      expect([status, body.error?.code]).toEqual([422, "VALIDATION_ERROR"]);
    }
  });

  it("applies the tenant's trust ceiling", async () => {
    const reply = await service.execute(tenant.key, {
      runtime: "edge",
      code: "export default () => 1",
      trustLevel: "high",
    });
    expect(reply).toMatchObject({ ok: false, error: { code: "TRUST_LEVEL_EXCEEDED" } });
  });

  it("executes, gets, lists and validates for the key's tenant only", async () => {
    const ran = await service.execute(tenant.key, { runtime: "edge", code: "export default async () => 'mine'" });
    if (!ran.ok) throw new Error(JSON.stringify(ran.error));
    expect(ran.value).toMatchObject({ output: "mine", trustLevel: "low" });

    expect(await service.get(tenant.key, ran.value.id)).toMatchObject({ ok: true, value: { output: "mine" } });
    const stranger = await createTenant();
    expect(await service.get(stranger.key, ran.value.id)).toMatchObject({ ok: false, error: { code: "NOT_FOUND" } });

    const listed = await service.list(tenant.key, { limit: 5 });
    expect(listed.ok && listed.value.executions.map((entry) => entry.id)).toEqual([ran.value.id]);
    const checked = await service.validate(tenant.key, { code: "export default () => eval('1')" });
    expect(checked).toMatchObject({ ok: true, value: { valid: false, problems: [{ rule: "construct-refused" }] } });
    const usage = await service.usage(tenant.key);
    expect(usage.ok && usage.value).toMatchObject({ tenantId: tenant.id, concurrency: { running: 0 } });
    // The execution and the validation above counted; the usage call did not.
    expect(usage.ok && usage.value.requests.limit - usage.value.requests.remaining).toBeGreaterThanOrEqual(2);
    const again = await service.usage(tenant.key);
    expect(again.ok && again.value.requests.remaining).toBe(usage.ok && usage.value.requests.remaining);
  });
});

describe("documentation", () => {
  it("shows the example client Worker in the README exactly as it runs here", () => {
    expect(readme).toContain(exampleWorker.trim());
  });
});
