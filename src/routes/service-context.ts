/** The service layer's view of an HTTP request: its bindings, the authenticated caller, the loopback exports. */
import type { Context } from "hono";
import type { TenantEnv } from "../middleware/auth";
import type { ServiceContext } from "../service/executions";

export function serviceContext(c: Context<TenantEnv>): ServiceContext {
  return { env: c.env, caller: c.get("caller"), exports: c.executionCtx.exports };
}
