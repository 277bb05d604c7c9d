/** `/v1/executions`: run a job, list the tenant's executions, read one back. */
import { Hono } from "hono";
import { ERROR_STATUS } from "../errors";
import { requireApiKey, type TenantEnv } from "../middleware/auth";
import { readJsonBody } from "../middleware/json-body";
import { readQuery } from "../middleware/query";
import { ExecutionRequest, ListQuery } from "../schemas";
import { execute, getExecution, listOwnExecutions } from "../service/executions";
import { setRateHeaders } from "./rate-headers";
import { serviceContext } from "./service-context";

export const executions = new Hono<TenantEnv>();
executions.use(requireApiKey);

executions.post("/", async (c) => {
  const job = await readJsonBody(c.req.raw, ExecutionRequest);
  const { result, rate } = await execute(serviceContext(c), job);
  setRateHeaders(c, rate);
  return c.json(result, result.error ? ERROR_STATUS[result.error.code] : 200);
});

executions.get("/", async (c) => {
  const query = readQuery(c.req.url, ListQuery);
  return c.json(await listOwnExecutions(serviceContext(c), query));
});

executions.get("/:id", async (c) => {
  return c.json(await getExecution(serviceContext(c), c.req.param("id")));
});
