/** `GET /v1/usage`: what the caller's tenant has used of its limits. */
import { Hono } from "hono";
import { requireApiKey, type TenantEnv } from "../middleware/auth";
import { tenantUsage } from "../service/usage";

export const usage = new Hono<TenantEnv>();
usage.use(requireApiKey);

usage.get("/", async (c) => c.json(await tenantUsage(c.env, c.get("caller"))));
