/** The front door: API keys, tenant scoping, trust levels, rate limits, validation, history. */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import readme from "../README.md?raw";
import { CordonError } from "../src/errors";
import { effectiveTrustLevel } from "../src/policy/admission";
import { renderTrustTable } from "../src/policy/trust-table";
import { historyStatement } from "../src/store/executions";
import { clientAddress, FAILED_LOOKUPS_PER_WINDOW, MAX_IN_FLIGHT } from "../src/tenants/lookup-throttle";
import { admin, call, createTenant, postJson } from "./helpers";

const TRIVIAL = "export default async () => 1";

describe("admin API", () => {
  it("refuses calls without the admin token", async () => {
    const anonymous = await call("/v1/admin/tenants", { method: "POST" });
    expect(anonymous.status).toBe(401);
    const wrong = await call("/v1/admin/tenants/ten_x", { key: "not-the-token" });
    expect(wrong.body.error?.code).toBe("UNAUTHORIZED");
  });

  it("shows a key once and stores only its hash", async () => {
    const tenant = await createTenant({ name: "acme" });
    expect(tenant.key).toMatch(/^ck_[a-z0-9]{12}_[a-z0-9]{32}$/);
    const listed = await admin("GET", `/tenants/${tenant.id}`);
    const keys = listed.body.keys as Record<string, unknown>[];
    expect(keys).toHaveLength(1);
    expect(keys[0]).toMatchObject({ prefix: tenant.key.slice(0, 15), revokedAt: null });
    expect(JSON.stringify(listed.body)).not.toContain(tenant.key);
    expect(keys[0]).not.toHaveProperty("hash");
  });

  it("updates a tenant's limits and validates the change", async () => {
    const tenant = await createTenant();
    const updated = await admin("PATCH", `/tenants/${tenant.id}`, { maxTrustLevel: "low", rateLimit: 7 });
    expect(updated.body.tenant).toMatchObject({ maxTrustLevel: "low", rateLimitPerHour: 7 });
    expect((await admin("PATCH", `/tenants/${tenant.id}`, { maxTrustLevel: "root" })).status).toBe(422);
    expect((await admin("PATCH", "/tenants/ten_missing", { rateLimit: 1 })).status).toBe(404);
  });
});

/**
 * Sends failing requests until one is refused with 429, and answers their statuses. AUTH_FAILURES
 * counts in fixed 10 s windows: a run that crosses the edge of one starts counting again, so the
 * refusal comes after at most two windows' worth, never before one.
 */
async function untilRefused(send: (i: number) => Promise<{ status: number }>): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i <= 2 * FAILED_LOOKUPS_PER_WINDOW + 1 && statuses.at(-1) !== 429; i++) {
    statuses.push((await send(i)).status);
  }
  return statuses;
}

describe("API keys", () => {
  it("refuses a missing, malformed or unknown key with 401", async () => {
    const job = { runtime: "edge", code: TRIVIAL };
    expect((await postJson("/v1/executions", job)).status).toBe(401);
    expect((await postJson("/v1/executions", job, "ck_short")).status).toBe(401);
    const unknown = await postJson("/v1/executions", job, `ck_${"a".repeat(12)}_${"b".repeat(32)}`);
    expect(unknown.status).toBe(401);
    expect(unknown.body.error?.code).toBe("UNAUTHORIZED");
  });

  it("stops accepting a revoked key, and a rotated key's old value", async () => {
    const tenant = await createTenant();
    expect((await tenant.execute({ code: TRIVIAL })).status).toBe(200);

    const rotated = await admin("POST", `/keys/${tenant.keyId}/rotate`);
    const fresh = rotated.body.apiKey as { key: string; id: string };
    expect((await tenant.execute({ code: TRIVIAL })).status).toBe(401);
    expect((await postJson("/v1/executions", { runtime: "edge", code: TRIVIAL }, fresh.key)).status).toBe(200);

    await admin("POST", `/keys/${fresh.id}/revoke`);
    expect((await postJson("/v1/executions", { runtime: "edge", code: TRIVIAL }, fresh.key)).status).toBe(401);
  });

  it("refuses lookups from an address that sent too many unknown keys, but not a cached key's requests", async () => {
    const tenant = await createTenant();
    const from = (address: string, key: string) =>
      call("/v1/executions?limit=1", { key, headers: { "cf-connecting-ip": address } });
    const unknownKey = (i: number) => `ck_${String(i).padStart(12, "0")}_${"b".repeat(32)}`;
    const address = "203.0.113.7";
    expect((await from(address, tenant.key)).status).toBe(200);

    const answers = await untilRefused((i) => from(address, unknownKey(i)));
    expect(answers.slice(0, FAILED_LOOKUPS_PER_WINDOW)).toEqual(Array(FAILED_LOOKUPS_PER_WINDOW).fill(401));
    expect(answers.at(-1)).toBe(429);

    const refused = await from(address, unknownKey(999));
    expect(refused.body.error).toMatchObject({ code: "RATE_LIMITED", limit: "failed_key_lookups" });
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(refused.headers.get("ratelimit-limit")).toBeNull();
    // Another address still gets its own answer, and the cached key still works from this one.
    expect((await from("203.0.113.8", unknownKey(0))).status).toBe(401);
    expect((await from(address, tenant.key)).status).toBe(200);
  });

  it("counts IPv6 addresses by their /64, so one host cannot spread its failures over its block", async () => {
    expect(clientAddress("2001:db8:1:2::5")).toBe("2001:db8:1:2::/64");
    expect(clientAddress("2001:0DB8:0001:0002:aaaa:bbbb:cccc:dddd")).toBe("2001:db8:1:2::/64");
    expect(clientAddress("::1")).toBe("0:0:0:0::/64");
    expect(clientAddress("::ffff:203.0.113.5")).toBe("203.0.113.5");
    expect(clientAddress(" 198.51.100.4 ")).toBe("198.51.100.4");
    expect(clientAddress(undefined)).toBeNull();

    const unknownKey = (i: number) => `ck_${String(i).padStart(12, "7")}_${"c".repeat(32)}`;
    // Every request from another host of the same /64: they share one count.
    const answers = await untilRefused((i) =>
      call("/v1/executions", {
        key: unknownKey(i),
        headers: { "cf-connecting-ip": `2001:db8:aa:bb::${(i + 1).toString(16)}` },
      }),
    );
    expect(answers.slice(0, FAILED_LOOKUPS_PER_WINDOW)).toEqual(Array(FAILED_LOOKUPS_PER_WINDOW).fill(401));
    expect(answers.at(-1)).toBe(429);
  });

  it("looks up at most a few keys of one address at once, so a burst is not read whole before it is counted", async () => {
    const unknownKey = (i: number) => `ck_${String(i).padStart(12, "9")}_${"d".repeat(32)}`;
    const burst = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        call("/v1/executions", { key: unknownKey(i), headers: { "cf-connecting-ip": "192.0.2.60" } }),
      ),
    );
    const looked = burst.filter((answer) => answer.status === 401).length;
    expect(looked).toBeLessThanOrEqual(FAILED_LOOKUPS_PER_WINDOW + MAX_IN_FLIGHT);
    const refused = burst.find((answer) => answer.body.error?.limit === "key_lookups_in_flight");
    expect(refused?.status).toBe(429);
    expect(refused?.headers.get("retry-after")).toBe("1");
  });

  it("lets a burst with one good key through when the key has just left the cache", async () => {
    const tenant = await createTenant();
    const burst = await Promise.all(
      Array.from({ length: 12 }, () =>
        call("/v1/executions?limit=1", { key: tenant.key, headers: { "cf-connecting-ip": "192.0.2.61" } }),
      ),
    );
    expect(burst.map((answer) => answer.status)).toEqual(Array(12).fill(200));
  });

  it("keeps the health check open", async () => {
    expect((await call("/healthz")).status).toBe(200);
  });
});

describe("tenant scoping", () => {
  it("answers another tenant's execution id with 404, and lists only the caller's executions", async () => {
    const alice = await createTenant({ name: "alice" });
    const bob = await createTenant({ name: "bob" });
    const secret = await alice.execute({ code: "export default async () => 'alice-secret'" });

    const peek = await bob.get(`/v1/executions/${secret.body.id}`);
    expect(peek.status).toBe(404);
    expect(JSON.stringify(peek.body)).not.toContain("alice-secret");
    expect((await alice.get(`/v1/executions/${secret.body.id}`)).body.output).toBe("alice-secret");

    const bobsList = await bob.get("/v1/executions");
    expect(bobsList.body.executions).toEqual([]);
  });
});

describe("trust cordons", () => {
  it("refuses a trust level above the tenant's ceiling with 403", async () => {
    const tenant = await createTenant({ maxTrustLevel: "low" });
    const { status, body } = await tenant.execute({ code: TRIVIAL, trustLevel: "high" });
    expect(status).toBe(403);
    expect(body.error).toMatchObject({ code: "TRUST_LEVEL_EXCEEDED", requested: "high", ceiling: "low" });
  });

  it("runs at a lower level when asked, with that level's limits, clamped to its maxima", async () => {
    const tenant = await createTenant({ maxTrustLevel: "high" });
    const { body } = await tenant.execute({ code: TRIVIAL, trustLevel: "untrusted", timeout: 60_000 });
    expect(body.trustLevel).toBe("untrusted");
    expect(body.limits).toMatchObject({ timeoutMs: 5_000, cpuTimeMs: 50, bindingCalls: 0 });
    const stored = await tenant.get(`/v1/executions/${body.id}`);
    expect(stored.body.trustLevel).toBe("untrusted");
  });

  it("defaults to the tenant's ceiling", async () => {
    const tenant = await createTenant({ maxTrustLevel: "medium" });
    const { body } = await tenant.execute({ code: TRIVIAL });
    expect(body.trustLevel).toBe("medium");
    expect(body.limits?.timeoutMs).toBe(10_000);
  });

  it("refuses eval and the Function constructor at low and untrusted, but not at high", async () => {
    const tenant = await createTenant({ maxTrustLevel: "high" });
    const code = "export default async () => typeof eval + typeof Function";
    const untrusted = await tenant.execute({ code, trustLevel: "untrusted" });
    expect(untrusted.status).toBe(403);
    const reasons = untrusted.body.error?.reasons as { rule: string; message: string }[];
    expect(reasons.map((reason) => reason.rule)).toEqual(["construct-refused", "construct-refused"]);
    expect((await tenant.execute({ code, trustLevel: "high" })).body.output).toBe("functionfunction");
  });

  it("refuses a runtime the level does not allow", () => {
    expect(() => effectiveTrustLevel("untrusted", "high", "node")).toThrow(CordonError);
    expect(effectiveTrustLevel(undefined, "low", "node")).toBe("low");
  });

  it("documents in the README exactly the table the policy module holds", () => {
    expect(readme).toContain(renderTrustTable());
  });
});

describe("rate limits", () => {
  it("holds the hourly limit exactly under a parallel burst, with headers", async () => {
    const tenant = await createTenant({ rateLimit: 5 });
    const burst = await Promise.all(Array.from({ length: 12 }, () => tenant.execute({ code: TRIVIAL })));
    const statuses = burst.map((response) => response.status).sort();
    expect(statuses.filter((status) => status === 200)).toHaveLength(5);
    expect(statuses.filter((status) => status === 429)).toHaveLength(7);

    const refused = burst.find((response) => response.status === 429);
    expect(refused?.body.error).toMatchObject({ code: "RATE_LIMITED", limit: "tenant_rate" });
    expect(Number(refused?.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(refused?.headers.get("ratelimit-limit")).toBe("5");
    expect(refused?.headers.get("ratelimit-remaining")).toBe("0");
    const accepted = burst.find((response) => response.status === 200);
    expect(accepted?.headers.get("ratelimit-limit")).toBe("5");
    expect(Number(accepted?.headers.get("ratelimit-reset"))).toBeGreaterThan(0);
  });

  it("counts code refused before running, and validations, but gives them no concurrency slot", async () => {
    const tenant = await createTenant({ rateLimit: 3, maxConcurrency: 1 });
    const validated = await postJson("/v1/validate", { code: TRIVIAL }, tenant.key);
    expect(validated.status).toBe(200);
    expect(validated.headers.get("ratelimit-remaining")).toBe("2");
    const refused = await tenant.execute({ code: "export default (" });
    expect(refused.status).toBe(422);
    expect(refused.headers.get("ratelimit-remaining")).toBe("1");
    const accepted = await tenant.execute({ code: TRIVIAL });
    expect(accepted.status).toBe(200);
    expect(accepted.headers.get("ratelimit-remaining")).toBe("0");
    const over = await postJson("/v1/validate", { code: TRIVIAL }, tenant.key);
    expect(over.status).toBe(429);
    expect(over.body.error).toMatchObject({ code: "RATE_LIMITED", limit: "tenant_rate" });
  });

  it("reports a full window in the headers of code the checks refused", async () => {
    const tenant = await createTenant({ rateLimit: 100 });
    const limited = await admin("POST", `/tenants/${tenant.id}/keys`, { name: "once", rateLimit: 1 });
    const key = (limited.body.apiKey as { key: string }).key;
    expect((await postJson("/v1/executions", { runtime: "edge", code: TRIVIAL }, key)).status).toBe(200);
    // The key's window is full, the tenant's is not: the code is checked, refused, and says so.
    const refused = await postJson("/v1/executions", { runtime: "edge", code: "export default (" }, key);
    expect(refused.status).toBe(422);
    expect(refused.headers.get("ratelimit-limit")).toBe("1");
    expect(refused.headers.get("ratelimit-remaining")).toBe("0");
    expect(Number(refused.headers.get("ratelimit-reset"))).toBeGreaterThan(0);
    expect(refused.headers.get("retry-after")).toBeNull();
  });

  it("answers code sent over the limit with 429 before checking it", async () => {
    const tenant = await createTenant({ rateLimit: 1 });
    expect((await tenant.execute({ code: TRIVIAL })).status).toBe(200);
    // Checked, this code would be refused with 422; over the limit it is not looked at.
    const over = await tenant.execute({ code: "export default (" });
    expect(over.status).toBe(429);
    expect(over.body.error?.code).toBe("RATE_LIMITED");
  });

  it("applies a key's own limit", async () => {
    const tenant = await createTenant({ rateLimit: 100 });
    const limited = await admin("POST", `/tenants/${tenant.id}/keys`, { name: "ci", rateLimit: 2 });
    const key = (limited.body.apiKey as { key: string }).key;
    const run = () => postJson("/v1/executions", { runtime: "edge", code: TRIVIAL }, key);
    expect([(await run()).status, (await run()).status]).toEqual([200, 200]);
    const third = await run();
    expect(third.status).toBe(429);
    expect(third.body.error?.limit).toBe("key_rate");
    expect((await tenant.execute({ code: TRIVIAL })).status).toBe(200);
  });

  it("caps concurrently running executions", async () => {
    const tenant = await createTenant({ maxConcurrency: 1 });
    const slow = tenant.execute({
      code: "export default async () => { await new Promise((r) => setTimeout(r, 800)); return 1 }",
    });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const second = await tenant.execute({ code: TRIVIAL });
    expect(second.status).toBe(429);
    expect(second.body.error?.limit).toBe("concurrency");
    expect((await slow).status).toBe(200);
    expect((await tenant.execute({ code: TRIVIAL })).status).toBe(200);
  });
});

describe("GET /v1/usage", () => {
  it("shows the tenant's window, running jobs and storage, and counts nothing itself", async () => {
    const tenant = await createTenant({ rateLimit: 5, maxConcurrency: 3, storageLimitMb: 2 });
    const usage = async () => (await call("/v1/usage", { key: tenant.key })).body;
    expect(await usage()).toMatchObject({
      tenantId: tenant.id,
      maxTrustLevel: "high",
      requests: { limit: 5, remaining: 5, exhausted: null },
      concurrency: { limit: 3, running: 0 },
      storage: { limitBytes: 2 * 1024 * 1024, usedBytes: 0 },
    });

    const wrote = await tenant.execute({
      code: `export default async (_input, { env }) => {
        await env.DB.query("CREATE TABLE notes (body TEXT)");
        await env.DB.query("INSERT INTO notes (body) VALUES (?)", ["x".repeat(100_000)]);
      }`,
    });
    expect(wrote.status).toBe(200);
    const held = await tenant.execute({
      // Long enough to still be running when a loaded machine gets to the next request.
      code: "export default async () => { await new Promise((r) => setTimeout(r, 3000)); return 1 }",
      async: true,
    });
    expect(held.status).toBe(202);
    const during = await usage();
    expect(during).toMatchObject({ requests: { remaining: 3 }, concurrency: { running: 1 } });
    expect((during.storage as { usedBytes: number }).usedBytes).toBeGreaterThanOrEqual(100_000);
    expect((await usage()).requests).toMatchObject({ remaining: 3 });

    const finished = await call(`/v1/executions/${String(held.body.id)}/wait?timeout=15000`, {
      method: "POST",
      key: tenant.key,
    });
    expect(finished.status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await tenant.execute({ code: TRIVIAL })).status).toBe(200);
    expect(await usage()).toMatchObject({
      requests: { remaining: 0, exhausted: "tenant_rate" },
      concurrency: { running: 0 },
    });
  });
});

describe("POST /v1/validate", () => {
  it("reports syntax errors, refused constructs and valid code without running anything", async () => {
    const tenant = await createTenant({ maxTrustLevel: "high" });
    const validate = (body: Record<string, unknown>) => postJson("/v1/validate", body, tenant.key);

    const syntax = await validate({ code: "export default async () => {\n  return 1 +\n}" });
    expect(syntax.body).toMatchObject({ valid: false, problems: [{ rule: "syntax-error", line: 3, column: 1 }] });
    const refused = await validate({ code: "export default () => eval('1')", trustLevel: "low" });
    expect(refused.body).toMatchObject({ valid: false, trustLevel: "low", problems: [{ rule: "construct-refused" }] });
    const ok = await validate({ code: "export default { fetch() { return new Response('x') } }" });
    expect(ok.body).toMatchObject({ valid: true, exportKind: "fetch-handler" });
    expect((await tenant.get("/v1/executions")).body.executions).toEqual([]);
  });
});

describe("execution history", () => {
  it("lists newest first with cursor pagination and filters, carrying metadata and the code's hash", async () => {
    const tenant = await createTenant();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const code = i === 2 ? "export default async () => { throw new Error('x') }" : TRIVIAL;
      ids.push(String((await tenant.execute({ code, metadata: { run: i } })).body.id));
    }
    const first = await tenant.get("/v1/executions?limit=2");
    const page1 = first.body.executions as { id: string; metadata: unknown; codeSha256: string }[];
    expect(page1.map((entry) => entry.id)).toEqual([ids[4], ids[3]]);
    expect(page1[0]?.metadata).toEqual({ run: 4 });
    expect(page1[0]?.codeSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(page1[0]).not.toHaveProperty("logs");

    const second = await tenant.get(`/v1/executions?limit=2&cursor=${first.body.nextCursor}`);
    expect((second.body.executions as { id: string }[]).map((entry) => entry.id)).toEqual([ids[2], ids[1]]);
    const third = await tenant.get(`/v1/executions?limit=2&cursor=${second.body.nextCursor}`);
    expect((third.body.executions as { id: string }[]).map((entry) => entry.id)).toEqual([ids[0]]);
    expect(third.body.nextCursor).toBeNull();

    const failed = await tenant.get("/v1/executions?status=failed");
    expect((failed.body.executions as { id: string }[]).map((entry) => entry.id)).toEqual([ids[2]]);
    expect((await tenant.get("/v1/executions?limit=500")).status).toBe(422);
    expect((await tenant.get("/v1/executions?cursor=%%%")).status).toBe(422);
  });

  it("reads a filtered page through an index on the filter, not the tenant's whole history", async () => {
    for (const filter of [{ status: "failed" }, { runtime: "node" }] as const) {
      const { sql, bindings } = historyStatement("ten_x", { limit: 20, ...filter });
      const plan = await env.DB.prepare(`EXPLAIN QUERY PLAN ${sql}`)
        .bind(...bindings)
        .all<{ detail: string }>();
      const details = plan.results.map((row) => row.detail).join("; ");
      expect(details).toMatch(new RegExp(`USING INDEX executions_by_tenant_${Object.keys(filter)[0]}`));
      expect(details).not.toMatch(/TEMP B-TREE/);
    }
  });

  it("bounds caller metadata", async () => {
    const tenant = await createTenant();
    const tooMany = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, i]));
    expect((await tenant.execute({ code: TRIVIAL, metadata: tooMany })).status).toBe(422);
  });
});
