/**
 * The OpenAPI 3.1 document, generated from ROUTES and the zod schemas they name (zod's JSON Schema
 * output is draft 2020-12, the dialect of OpenAPI 3.1). Built once per isolate. No I/O.
 */
import { z } from "zod";
import { ERROR_STATUS, ErrorCode } from "../errors";
import * as schemas from "../schemas";
import { ErrorEnvelope, JsonValue } from "../schemas";
import { ROUTES, type RouteDoc } from "./routes";

type JsonSchema = Record<string, unknown>;
type Io = "input" | "output";

let cached: JsonSchema | undefined;

export function openApiDocument(): JsonSchema {
  cached ??= build();
  return cached;
}

function build(): JsonSchema {
  const components = new ComponentNames();
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of ROUTES) {
    const path = route.path.replace(/:([a-zA-Z]+)/g, "{$1}");
    paths[path] ??= {};
    paths[path][route.method] = operation(route, components);
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "Cordon",
      version: "0.1.0",
      description:
        "Run untrusted code on Cloudflare. Every failure is one error code with a fixed HTTP status; see the README.",
    },
    servers: [{ url: "/" }],
    tags: [
      { name: "executions", description: "Run jobs and read their results" },
      { name: "admin", description: "Tenants and API keys (ADMIN_TOKEN)" },
      { name: "meta", description: "Health and documentation" },
    ],
    paths,
    components: {
      schemas: components.schemas(),
      securitySchemes: {
        apiKey: { type: "http", scheme: "bearer", description: "A tenant's API key, `ck_…`" },
        admin: { type: "http", scheme: "bearer", description: "The ADMIN_TOKEN secret" },
      },
    },
  };
}

function operation(route: RouteDoc, components: ComponentNames): Record<string, unknown> {
  const operationId = `${route.method}${route.path.replace(/[/:{}.]+(\w)?/g, (_, next: string | undefined) => (next ?? "").toUpperCase())}`;
  const parameters = [
    ...[...route.path.matchAll(/:([a-zA-Z]+)/g)].map((match) => ({
      name: match[1],
      in: "path",
      required: true,
      schema: { type: "string" },
    })),
    ...(route.query ? queryParameters(route.query) : []),
  ];
  const responses: Record<string, unknown> = {};
  for (const [status, response] of Object.entries(route.responses)) {
    responses[status] = {
      description: response.description,
      ...(response.schema
        ? {
            content: {
              [response.contentType ?? "application/json"]: {
                schema: components.ref(response.schema, "output", `${operationId}${status}`),
              },
            },
          }
        : response.contentType
          ? { content: { [response.contentType]: {} } }
          : {}),
    };
  }
  for (const status of route.errors) {
    responses[String(status)] ??= {
      description: codesWithStatus(status).join(", "),
      content: { "application/json": { schema: components.ref(ErrorEnvelope, "output", "ErrorEnvelope") } },
    };
  }
  return {
    operationId,
    summary: route.summary,
    tags: [route.tag],
    ...(route.auth === "none" ? { security: [] } : { security: [{ [route.auth]: [] }] }),
    ...(parameters.length ? { parameters } : {}),
    ...(route.body
      ? {
          requestBody: {
            required: true,
            content: { "application/json": { schema: components.ref(route.body, "input", `${operationId}Body`) } },
          },
        }
      : {}),
    responses,
  };
}

function queryParameters(query: z.ZodObject): Record<string, unknown>[] {
  const schema = z.toJSONSchema(query, { target: "draft-2020-12", io: "input", unrepresentable: "any" }) as {
    properties?: Record<string, JsonSchema>;
    required?: string[];
  };
  return Object.entries(schema.properties ?? {}).map(([name, property]) => ({
    name,
    in: "query",
    required: schema.required?.includes(name) ?? false,
    schema: property,
  }));
}

function codesWithStatus(status: number): string[] {
  return Object.values(ErrorCode).filter((code) => ERROR_STATUS[code] === status);
}

/** Names schemas as components; the same schema object always gets the same name. */
class ComponentNames {
  readonly #named = new Map<z.ZodType, { name: string; io: Io }>();

  ref(schema: z.ZodType, io: Io, fallbackName: string): { $ref: string } {
    const existing = this.#named.get(schema);
    if (existing) return { $ref: `#/components/schemas/${existing.name}` };
    const name = NAMED_SCHEMAS.get(schema) ?? fallbackName;
    this.#named.set(schema, { name, io });
    return { $ref: `#/components/schemas/${name}` };
  }

  schemas(): Record<string, JsonSchema> {
    const out: Record<string, JsonSchema> = {};
    for (const io of ["input", "output"] as const) {
      const registry = z.registry<{ id: string }>();
      registry.add(JsonValue, { id: "JsonValue" });
      for (const [schema, entry] of this.#named) if (entry.io === io) registry.add(schema, { id: entry.name });
      const generated = z.toJSONSchema(registry, {
        target: "draft-2020-12",
        io,
        unrepresentable: "any",
        uri: (id) => `#/components/schemas/${id}`,
      }).schemas;
      for (const [name, schema] of Object.entries(generated)) {
        const { $schema: _dialect, $id: _id, ...rest } = schema as JsonSchema;
        out[name] = rest;
      }
    }
    return out;
  }
}

/** Exported schemas keep their module names as component names. */
const NAMED_SCHEMAS = new Map<unknown, string>(
  Object.entries(schemas)
    .filter(([, value]) => value instanceof z.ZodType)
    .map(([name, value]) => [value, name]),
);
