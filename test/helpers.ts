import { env, exports } from "cloudflare:workers";
import { expect } from "vitest";
import { d1JobDatabase } from "../src/bindings/job-database";
import { BindingSession, type BindingSessionOptions } from "../src/bindings/session";
import { BYTES_PER_MB, StorageQuota } from "../src/bindings/storage-quota";
import { ledgerOf } from "../src/service/admission";

/** Matches the ADMIN_TOKEN binding set in vitest.config.ts. */
export const ADMIN_TOKEN = "test-admin-token";

export interface ApiResponse {
  status: number;
  headers: Headers;
  body: Record<string, unknown> & {
    id?: string;
    status?: string;
    success?: boolean;
    output?: unknown;
    logs?: { level: string; message: string; timestamp: number }[];
    logsTruncated?: boolean;
    metrics?: Record<string, unknown>;
    limits?: Record<string, number>;
    trustLevel?: string;
    error?: { code: string; message: string; [key: string]: unknown };
    tests?: { cases: { passed: boolean; actual?: unknown; error?: { message: string } }[]; allTestsPassed: boolean };
  };
}

/** Sends a request through the dispatcher's real fetch handler (routing, auth, validation, runner, D1). */
export async function call(path: string, init: RequestInit & { key?: string } = {}): Promise<ApiResponse> {
  const { key, ...rest } = init;
  const headers = new Headers(rest.headers);
  if (key) headers.set("authorization", `Bearer ${key}`);
  const response = await exports.default.fetch(new Request(`https://cordon.test${path}`, { ...rest, headers }));
  return { status: response.status, headers: response.headers, body: (await response.json()) as ApiResponse["body"] };
}

export function postJson(path: string, body: unknown, key?: string): Promise<ApiResponse> {
  return call(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    ...(key ? { key } : {}),
  });
}

export function admin(method: string, path: string, body?: unknown): Promise<ApiResponse> {
  return call(`/v1/admin${path}`, {
    method,
    key: ADMIN_TOKEN,
    ...(body === undefined ? {} : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }),
  });
}

export interface TestTenant {
  id: string;
  key: string;
  keyId: string;
  execute(job: Record<string, unknown>): Promise<ApiResponse>;
  get(path: string): Promise<ApiResponse>;
}

/** Creates a tenant through the admin API and returns helpers that act as it. */
export async function createTenant(options: Record<string, unknown> = {}): Promise<TestTenant> {
  const created = await admin("POST", "/tenants", {
    name: "test tenant",
    maxTrustLevel: "high",
    rateLimit: 10_000,
    maxConcurrency: 50,
    ...options,
  });
  if (created.status !== 201) throw new Error(`tenant creation failed: ${JSON.stringify(created.body)}`);
  const tenant = created.body.tenant as { id: string };
  const apiKey = created.body.apiKey as { key: string; id: string };
  return {
    id: tenant.id,
    key: apiKey.key,
    keyId: apiKey.id,
    execute: (job) => postJson("/v1/executions", { runtime: "edge", ...job }, apiKey.key),
    get: (path) => call(path, { key: apiKey.key }),
  };
}

/** Every route on one execution answers `stranger` 404, exactly as for an id that does not exist. */
export async function expectHiddenFrom(stranger: TestTenant, id: string): Promise<void> {
  for (const [method, suffix] of [
    ["GET", ""],
    ["POST", "/wait?timeout=10"],
    ["POST", "/cancel"],
    ["DELETE", ""],
  ] as const) {
    const response = await call(`/v1/executions/${id}${suffix}`, { method, key: stranger.key });
    expect(response.status, `${method} ${suffix}`).toBe(404);
  }
}

/** A tenant's storage limit in JOB_DB, kept by its real ledger, for tests that build a BindingSession. */
export function storageOf(tenantId: string, limitMb = 100): StorageQuota {
  return new StorageQuota(limitMb * BYTES_PER_MB, () => ledgerOf(env, tenantId));
}

/** A binding session of a `high` job of `tenantId` on the real D1, KV and ledger, with what a test replaces. */
export function sessionOf(tenantId: string, replaced: Partial<BindingSessionOptions> = {}): BindingSession {
  return new BindingSession({
    executionId: `exec_${crypto.randomUUID().replaceAll("-", "")}`,
    tenantId,
    trustLevel: "high",
    maxCalls: 100,
    db: d1JobDatabase(env.JOB_DB),
    kv: env.JOB_KV,
    storage: storageOf(tenantId),
    ...replaced,
  });
}
