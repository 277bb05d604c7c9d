/** `/v1/admin`: tenants and their API keys. Authorised by the ADMIN_TOKEN secret. */
import { Hono } from "hono";
import { CordonError, ErrorCode } from "../errors";
import { requireAdmin } from "../middleware/auth";
import { readJsonBody } from "../middleware/json-body";
import { CreateKey, CreateTenant, UpdateTenant } from "../schemas";
import { ledgerOf } from "../service/admission";
import { storageReport } from "../service/usage";
import { mintKey } from "../tenants/keys";
import { createTenant, findKey, findTenant, insertKey, listKeys, revokeKey, updateTenant } from "../tenants/store";

export const admin = new Hono<{ Bindings: Env }>();
admin.use(requireAdmin);

admin.post("/tenants", async (c) => {
  const body = await readJsonBody(c.req.raw, CreateTenant);
  const tenant = await createTenant(c.env.DB, {
    name: body.name,
    maxTrustLevel: body.maxTrustLevel,
    rateLimitPerHour: body.rateLimit,
    maxConcurrency: body.maxConcurrency,
    storageLimitMb: body.storageLimitMb,
  });
  const apiKey = await issueKey(c.env.DB, tenant.id, { name: "default" });
  return c.json({ tenant, apiKey }, 201);
});

admin.get("/tenants/:id", async (c) => {
  const tenant = await mustFindTenant(c.env.DB, c.req.param("id"));
  const [keys, use] = await Promise.all([listKeys(c.env.DB, tenant.id), ledgerOf(c.env, tenant.id).storageUse()]);
  return c.json({ tenant, keys, storage: storageReport(tenant.storageLimitMb, use) });
});

admin.patch("/tenants/:id", async (c) => {
  const body = await readJsonBody(c.req.raw, UpdateTenant);
  const tenant = await updateTenant(c.env.DB, c.req.param("id"), {
    name: body.name,
    maxTrustLevel: body.maxTrustLevel,
    rateLimitPerHour: body.rateLimit,
    maxConcurrency: body.maxConcurrency,
    storageLimitMb: body.storageLimitMb,
  });
  if (!tenant) throw notFound("tenant", c.req.param("id"));
  return c.json({ tenant });
});

admin.get("/tenants/:id/keys", async (c) => {
  const tenant = await mustFindTenant(c.env.DB, c.req.param("id"));
  return c.json({ keys: await listKeys(c.env.DB, tenant.id) });
});

admin.post("/tenants/:id/keys", async (c) => {
  const body = await readJsonBody(c.req.raw, CreateKey);
  const tenant = await mustFindTenant(c.env.DB, c.req.param("id"));
  return c.json({ apiKey: await issueKey(c.env.DB, tenant.id, body) }, 201);
});

admin.post("/keys/:id/revoke", async (c) => {
  const key = await revokeKey(c.env.DB, c.req.param("id"));
  if (!key) throw notFound("key", c.req.param("id"));
  return c.json({ key });
});

/** Rotation issues a new key with the same name and limit, then revokes the old one. */
admin.post("/keys/:id/rotate", async (c) => {
  const old = await findKey(c.env.DB, c.req.param("id"));
  if (!old) throw notFound("key", c.req.param("id"));
  if (old.revokedAt !== null) throw new CordonError(ErrorCode.VALIDATION_ERROR, "a revoked key cannot be rotated");
  const apiKey = await issueKey(c.env.DB, old.tenantId, {
    name: old.name ?? undefined,
    rateLimit: old.rateLimitPerHour ?? undefined,
  });
  const revoked = await revokeKey(c.env.DB, old.id);
  return c.json({ apiKey, revoked }, 201);
});

async function issueKey(
  db: D1Database,
  tenantId: string,
  options: { name?: string | undefined; rateLimit?: number | undefined },
) {
  const minted = await mintKey();
  const record = await insertKey(db, {
    tenantId,
    prefix: minted.prefix,
    hash: minted.hash,
    name: options.name,
    rateLimitPerHour: options.rateLimit,
  });
  // The only time the whole key leaves the service.
  return { ...record, key: minted.key };
}

async function mustFindTenant(db: D1Database, id: string) {
  const tenant = await findTenant(db, id);
  if (!tenant) throw notFound("tenant", id);
  return tenant;
}

function notFound(kind: "tenant" | "key", id: string): CordonError {
  return new CordonError(ErrorCode.NOT_FOUND, `no ${kind} with id ${id}`);
}
