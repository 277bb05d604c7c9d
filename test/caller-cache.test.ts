/**
 * The per-isolate cache of accepted API keys: how long it trusts a key, what a change through the
 * admin API drops at once, and that it stays bounded.
 */
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Caller } from "../src/tenants/authenticate";
import { CALLER_CACHE_MS, cacheCaller, cachedCaller, forgetCallers } from "../src/tenants/caller-cache";
import { admin, createTenant } from "./helpers";

const TRIVIAL = "export default async () => 1";

function callerOf(tenantId: string, keyId: string): Caller {
  const at = new Date(0).toISOString();
  return {
    tenant: {
      id: tenantId,
      name: "t",
      maxTrustLevel: "high",
      rateLimitPerHour: 10,
      maxConcurrency: 1,
      storageLimitMb: 1,
      createdAt: at,
      updatedAt: at,
    },
    key: { id: keyId, tenantId, prefix: "ck_x", name: null, rateLimitPerHour: null, createdAt: at, revokedAt: null },
  };
}

afterEach(() => vi.restoreAllMocks());

describe("the caller cache", () => {
  it("trusts an accepted key for CALLER_CACHE_MS, then asks again", () => {
    const now = vi.spyOn(Date, "now").mockReturnValue(1_000_000);
    cacheCaller("hash-a", callerOf("ten_a", "key_a"));
    now.mockReturnValue(1_000_000 + CALLER_CACHE_MS - 1);
    expect(cachedCaller("hash-a")?.key.id).toBe("key_a");
    now.mockReturnValue(1_000_000 + CALLER_CACHE_MS);
    expect(cachedCaller("hash-a")).toBeNull();
  });

  it("drops a key's and a tenant's entries when they change", () => {
    cacheCaller("hash-b", callerOf("ten_b", "key_b1"));
    cacheCaller("hash-c", callerOf("ten_b", "key_b2"));
    cacheCaller("hash-d", callerOf("ten_d", "key_d"));
    forgetCallers({ keyId: "key_b1" });
    expect(cachedCaller("hash-b")).toBeNull();
    expect(cachedCaller("hash-c")).not.toBeNull();
    forgetCallers({ tenantId: "ten_b" });
    expect(cachedCaller("hash-c")).toBeNull();
    expect(cachedCaller("hash-d")).not.toBeNull();
  });

  it("keeps at most 1000 keys, dropping the oldest", () => {
    for (let i = 0; i < 1001; i++) cacheCaller(`bulk-${i}`, callerOf("ten_bulk", `key_${i}`));
    expect(cachedCaller("bulk-0")).toBeNull();
    expect(cachedCaller("bulk-1")).not.toBeNull();
    expect(cachedCaller("bulk-1000")).not.toBeNull();
  });

  it("serves a recently checked key without reading D1, within its bound", async () => {
    const tenant = await createTenant();
    expect((await tenant.execute({ code: TRIVIAL })).status).toBe(200);
    // Revoked behind the API's back (as another isolate's revocation looks from here).
    await env.DB.prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ?")
      .bind(new Date().toISOString(), tenant.keyId)
      .run();
    expect((await tenant.execute({ code: TRIVIAL })).status).toBe(200);
    vi.spyOn(Date, "now").mockReturnValue(Date.now() + CALLER_CACHE_MS);
    expect((await tenant.execute({ code: TRIVIAL })).status).toBe(401);
  });

  it("applies a tenant change made through the admin API to the next request", async () => {
    const tenant = await createTenant({ maxTrustLevel: "high" });
    expect((await tenant.execute({ code: TRIVIAL })).body.trustLevel).toBe("high");
    await admin("PATCH", `/tenants/${tenant.id}`, { maxTrustLevel: "low" });
    expect((await tenant.execute({ code: TRIVIAL })).body.trustLevel).toBe("low");
  });
});
