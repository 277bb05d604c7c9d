/** The dispatcher's Hono app: routes, and the one place that writes error responses. */
import { Hono } from "hono";
import { CordonError, ErrorCode } from "./errors";
import { DOCS_PAGE } from "./openapi/docs-page";
import { openApiDocument } from "./openapi/document";
import { admin } from "./routes/admin";
import { executions } from "./routes/executions";
import { setRateHeaders } from "./routes/rate-headers";
import { usage } from "./routes/usage";
import { validate } from "./routes/validate";

export const app = new Hono<{ Bindings: Env }>();

app.get("/healthz", (c) => c.json({ ok: true as const }));
app.get("/openapi.json", (c) => c.json(openApiDocument()));
app.get("/docs", (c) => c.html(DOCS_PAGE));
app.route("/v1/executions", executions);
app.route("/v1/validate", validate);
app.route("/v1/usage", usage);
app.route("/v1/admin", admin);

app.notFound((c) => {
  throw new CordonError(ErrorCode.NOT_FOUND, "no such route", {
    method: c.req.method,
    path: new URL(c.req.url).pathname,
  });
});

app.onError((error, c) => {
  if (error instanceof CordonError) {
    if (error.rate) setRateHeaders(c, error.rate);
    else if (typeof error.detail.retryAfterSeconds === "number") {
      c.header("Retry-After", String(error.detail.retryAfterSeconds));
    }
    return c.json({ error: error.toBody() }, error.status);
  }
  console.error(JSON.stringify({ event: "unhandled_error", message: error.message, stack: error.stack }));
  const internal = new CordonError(ErrorCode.INTERNAL_ERROR, "internal error");
  return c.json({ error: internal.toBody() }, internal.status);
});
