/**
 * Every route of the API with its schemas: the source the OpenAPI document is generated from. A test
 * checks that this list and the app's routes are the same set.
 */
import { z } from "zod";
import {
  ApiKey,
  CreateKey,
  CreateTenant,
  ExecutionPage,
  ExecutionProgress,
  ExecutionRequest,
  ExecutionResult,
  IssuedApiKey,
  ListQuery,
  Tenant,
  UpdateTenant,
  ValidateRequest,
  StorageReport,
  Usage,
  ValidationReport,
  WaitQuery,
} from "../schemas";

export type Auth = "apiKey" | "admin" | "none";

export interface RouteDoc {
  method: "get" | "post" | "patch" | "delete";
  /** Hono-style path (`:id`); the document writes `{id}`. */
  path: string;
  summary: string;
  tag: "executions" | "admin" | "meta";
  auth: Auth;
  body?: z.ZodType;
  query?: z.ZodObject;
  /** Success responses by status; error responses are the shared envelope. */
  responses: Record<number, { description: string; schema?: z.ZodType; contentType?: string }>;
  errors: number[];
}

const TenantWithKey = z.object({ tenant: Tenant, apiKey: IssuedApiKey });
const TenantWithKeys = z.object({
  tenant: Tenant,
  keys: z.array(ApiKey),
  /** The tenant's tables and KV entries, against `storageLimitMb`. */
  storage: StorageReport,
});

export const ROUTES: readonly RouteDoc[] = [
  {
    method: "get",
    path: "/healthz",
    summary: "Liveness check",
    tag: "meta",
    auth: "none",
    responses: { 200: { description: "The dispatcher is up", schema: z.object({ ok: z.literal(true) }) } },
    errors: [],
  },
  {
    method: "get",
    path: "/openapi.json",
    summary: "This document",
    tag: "meta",
    auth: "none",
    responses: { 200: { description: "OpenAPI 3.1 document" } },
    errors: [],
  },
  {
    method: "get",
    path: "/docs",
    summary: "Interactive API reference",
    tag: "meta",
    auth: "none",
    responses: { 200: { description: "HTML page", contentType: "text/html" } },
    errors: [],
  },
  {
    method: "post",
    path: "/v1/executions",
    summary: "Run a job and wait for its result",
    tag: "executions",
    auth: "apiKey",
    body: ExecutionRequest,
    responses: {
      200: { description: "The job succeeded (test-case failures included)", schema: ExecutionResult },
      202: { description: "`async: true`: the job was accepted and runs on", schema: ExecutionProgress },
      408: { description: "SANDBOX_TIMEOUT: the whole result, with `error`", schema: ExecutionResult },
    },
    errors: [400, 401, 403, 413, 415, 422, 429, 502, 503],
  },
  {
    method: "get",
    path: "/v1/executions",
    summary: "List the tenant's executions, newest first",
    tag: "executions",
    auth: "apiKey",
    query: ListQuery,
    responses: { 200: { description: "A page of executions", schema: ExecutionPage } },
    errors: [401, 422, 429],
  },
  {
    method: "get",
    path: "/v1/executions/:id",
    summary: "Read a stored result",
    tag: "executions",
    auth: "apiKey",
    responses: {
      200: {
        description: "The stored result whatever the job's outcome, or the progress of a job still running",
        schema: z.union([ExecutionResult, ExecutionProgress]),
      },
    },
    errors: [401, 404, 429],
  },
  {
    method: "post",
    path: "/v1/executions/:id/wait",
    summary: "Wait for a job's result (long poll, `timeout` ms, at most 30 s)",
    tag: "executions",
    auth: "apiKey",
    query: WaitQuery,
    responses: {
      200: { description: "The job finished: its result", schema: ExecutionResult },
      202: { description: "Still running after `timeout`", schema: ExecutionProgress },
    },
    errors: [401, 404, 422, 429],
  },
  {
    method: "post",
    path: "/v1/executions/:id/cancel",
    summary: "Cancel a running job (a finished one keeps its result)",
    tag: "executions",
    auth: "apiKey",
    responses: { 200: { description: "The result: cancelled, or the one it already had", schema: ExecutionResult } },
    errors: [401, 404, 429],
  },
  {
    method: "delete",
    path: "/v1/executions/:id",
    summary: "Delete a finished job's stored result",
    tag: "executions",
    auth: "apiKey",
    responses: { 204: { description: "Deleted" } },
    errors: [401, 404, 409, 429],
  },
  {
    method: "post",
    path: "/v1/validate",
    summary: "Check code at a trust level without running it (counts against the hourly rate limit)",
    tag: "executions",
    auth: "apiKey",
    body: ValidateRequest,
    responses: { 200: { description: "The problems found (none when valid)", schema: ValidationReport } },
    errors: [400, 401, 403, 413, 415, 422, 429],
  },
  {
    method: "get",
    path: "/v1/usage",
    summary: "What the caller's tenant has used of its limits (rate window, concurrency, storage)",
    tag: "executions",
    auth: "apiKey",
    responses: { 200: { description: "The tenant's use of its limits", schema: Usage } },
    errors: [401, 429],
  },
  {
    method: "post",
    path: "/v1/admin/tenants",
    summary: "Create a tenant and its first API key",
    tag: "admin",
    auth: "admin",
    body: CreateTenant,
    responses: { 201: { description: "The tenant and its key (shown once)", schema: TenantWithKey } },
    errors: [400, 401, 415, 422],
  },
  {
    method: "get",
    path: "/v1/admin/tenants/:id",
    summary: "A tenant, its keys and its storage use",
    tag: "admin",
    auth: "admin",
    responses: { 200: { description: "The tenant", schema: TenantWithKeys } },
    errors: [401, 404],
  },
  {
    method: "patch",
    path: "/v1/admin/tenants/:id",
    summary: "Change a tenant's name, trust ceiling or limits",
    tag: "admin",
    auth: "admin",
    body: UpdateTenant,
    responses: { 200: { description: "The updated tenant", schema: z.object({ tenant: Tenant }) } },
    errors: [400, 401, 404, 415, 422],
  },
  {
    method: "get",
    path: "/v1/admin/tenants/:id/keys",
    summary: "A tenant's keys (never their secrets)",
    tag: "admin",
    auth: "admin",
    responses: { 200: { description: "The keys", schema: z.object({ keys: z.array(ApiKey) }) } },
    errors: [401, 404],
  },
  {
    method: "post",
    path: "/v1/admin/tenants/:id/keys",
    summary: "Issue another key",
    tag: "admin",
    auth: "admin",
    body: CreateKey,
    responses: { 201: { description: "The key (shown once)", schema: z.object({ apiKey: IssuedApiKey }) } },
    errors: [400, 401, 404, 415, 422],
  },
  {
    method: "post",
    path: "/v1/admin/keys/:id/rotate",
    summary: "Replace a key: a new one is issued, the old one revoked",
    tag: "admin",
    auth: "admin",
    responses: {
      201: {
        description: "The new key and the revoked one",
        schema: z.object({ apiKey: IssuedApiKey, revoked: ApiKey }),
      },
    },
    errors: [401, 404, 422],
  },
  {
    method: "post",
    path: "/v1/admin/keys/:id/revoke",
    summary: "Revoke a key",
    tag: "admin",
    auth: "admin",
    responses: { 200: { description: "The revoked key", schema: z.object({ key: ApiKey }) } },
    errors: [401, 404],
  },
];
