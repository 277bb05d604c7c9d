/** The dispatcher's Hono app: routes, and the one place that writes error responses. */
import { Hono } from "hono";
import { CordonError, ErrorCode } from "./errors";
import { admin } from "./routes/admin";
import { executions } from "./routes/executions";
import { setRateHeaders } from "./routes/rate-headers";
import { validate } from "./routes/validate";

export const app = new Hono<{ Bindings: Env }>();

app.get("/healthz", (c) => c.json({ ok: true }));
app.route("/v1/executions", executions);
app.route("/v1/validate", validate);
app.route("/v1/admin", admin);

app.notFound(() => {
  throw new CordonError(ErrorCode.NOT_FOUND, "no such route");
});

app.onError((error, c) => {
  if (error instanceof CordonError) {
    if (error.rate) setRateHeaders(c, error.rate);
    return c.json({ error: error.toBody() }, error.status);
  }
  console.error(JSON.stringify({ event: "unhandled_error", message: error.message, stack: error.stack }));
  const internal = new CordonError(ErrorCode.INTERNAL_ERROR, "internal error");
  return c.json({ error: internal.toBody() }, internal.status);
});
