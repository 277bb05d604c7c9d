/** The OpenAPI document: well-formed, complete, true to the app's routes and to real responses. */
import { exports } from "cloudflare:workers";
import { describe, expect, expectTypeOf, it } from "vitest";
import { z } from "zod";
import { app } from "../src/app";
import type { ExecuteCodeRequest } from "../src/client";
import { ROUTES } from "../src/openapi/routes";
import { ExecutionPage, ExecutionRequest, ExecutionResult, ValidationReport } from "../src/schemas";
import { admin, call, createTenant, postJson } from "./helpers";

const Operation = z.object({
  operationId: z.string(),
  summary: z.string(),
  responses: z.record(z.string().regex(/^[1-5]\d\d$/), z.object({ description: z.string() }).loose()),
});
const Document = z.object({
  openapi: z.literal("3.1.0"),
  info: z.object({ title: z.string(), version: z.string() }),
  paths: z.record(
    z.string().startsWith("/"),
    z.partialRecord(z.enum(["get", "post", "patch", "put", "delete"]), Operation),
  ),
  components: z.object({ schemas: z.record(z.string(), z.record(z.string(), z.unknown())) }).loose(),
});

async function fetchDocument() {
  const response = await call("/openapi.json");
  expect(response.status).toBe(200);
  return response.body;
}

function refsIn(value: unknown, found: string[] = []): string[] {
  if (Array.isArray(value)) value.forEach((item) => refsIn(item, found));
  else if (value && typeof value === "object") {
    for (const [key, inner] of Object.entries(value)) {
      if (key === "$ref" && typeof inner === "string") found.push(inner);
      else refsIn(inner, found);
    }
  }
  return found;
}

describe("GET /openapi.json", () => {
  it("is a well-formed OpenAPI 3.1 document whose references all resolve", async () => {
    const document = Document.parse(await fetchDocument());
    const refs = refsIn(document);
    expect(refs.length).toBeGreaterThan(10);
    for (const ref of refs) {
      expect(ref).toMatch(/^#\/components\/schemas\/[A-Za-z0-9]+$/);
      expect(document.components.schemas).toHaveProperty(ref.split("/").pop() ?? "");
    }
    const ids = Object.values(document.paths).flatMap((methods) => Object.values(methods).map((op) => op.operationId));
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("documents exactly the routes the app serves", async () => {
    const served = new Set(
      app.routes
        .filter((route) => route.method !== "ALL")
        .map((route) => `${route.method.toLowerCase()} ${route.path}`),
    );
    const documented = new Set(ROUTES.map((route) => `${route.method} ${route.path}`));
    expect([...documented].sort()).toEqual([...served].sort());
  });

  it("has no documented route that the app answers with 'no such route'", async () => {
    const tenant = await createTenant();
    for (const route of ROUTES) {
      const path = route.path.replace(/:id/g, "x_unknown");
      const key = route.auth === "admin" ? "test-admin-token" : tenant.key;
      const response = await exports.default.fetch(
        new Request(`https://cordon.test${path}`, {
          method: route.method.toUpperCase(),
          headers: { authorization: `Bearer ${key}`, ...(route.body ? { "content-type": "application/json" } : {}) },
          ...(route.body ? { body: "{}" } : {}),
        }),
      );
      const isJson = response.headers.get("content-type")?.includes("json") ?? false;
      const body = (isJson ? await response.json() : {}) as { error?: { path?: string } };
      // The app's unknown-route answer names the path; a missing resource (e.g. this id) does not.
      expect(body.error?.path, `${route.method} ${route.path}`).toBeUndefined();
      expect(response.status, `${route.method} ${route.path}`).toBeLessThan(500);
    }
  });

  it("generates request bodies from the same zod schemas that validate them", async () => {
    const document = Document.parse(await fetchDocument());
    const request = document.components.schemas.ExecutionRequest as { properties: Record<string, unknown> };
    expect(Object.keys(request.properties).sort()).toEqual(Object.keys(ExecutionRequest.shape).sort());
    expectTypeOf<ExecuteCodeRequest>().toEqualTypeOf<z.input<typeof ExecutionRequest>>();
  });

  it("describes the responses the app really sends", async () => {
    const tenant = await createTenant();
    const ran = await tenant.execute({ code: "export default async () => ({ ok: [1, 'two', null] })" });
    expect(ExecutionResult.safeParse(ran.body).success).toBe(true);
    expect(ExecutionPage.safeParse((await tenant.get("/v1/executions")).body).success).toBe(true);
    const report = await postJson("/v1/validate", { code: "export default (" }, tenant.key);
    expect(ValidationReport.safeParse(report.body).success).toBe(true);
    const created = await admin("POST", "/tenants", { name: "doc", maxTrustLevel: "low" });
    const createRoute = ROUTES.find((route) => route.path === "/v1/admin/tenants" && route.method === "post");
    expect(createRoute?.responses[201]?.schema?.safeParse(created.body).success).toBe(true);
  });
});

describe("GET /docs", () => {
  it("serves the interactive reference page", async () => {
    const response = await exports.default.fetch("https://cordon.test/docs");
    expect(response.headers.get("content-type")).toMatch(/text\/html/);
    expect(await response.text()).toContain('fetch("/openapi.json")');
  });
});
