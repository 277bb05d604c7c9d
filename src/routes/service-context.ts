/** The service layer's view of an HTTP request: its bindings, loopback exports and lifetime, the authenticated caller. */
import type { Context } from "hono";
import type { TenantEnv } from "../middleware/auth";
import type { ServiceContext } from "../service/executions";

export function serviceContext(c: Context<TenantEnv>): ServiceContext {
  const { executionCtx } = c;
  return {
    env: c.env,
    caller: c.get("caller"),
    exports: executionCtx.exports,
    waitUntil: (promise) => executionCtx.waitUntil(promise),
  };
}
