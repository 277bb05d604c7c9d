/** `/v1/executions`: run or submit a job, list the tenant's executions, read, wait for, cancel, delete one. */
import { Hono } from "hono";
import { ERROR_STATUS } from "../errors";
import { requireApiKey, type TenantEnv } from "../middleware/auth";
import { readJsonBody } from "../middleware/json-body";
import { readQuery } from "../middleware/query";
import { ExecutionRequest, isFinished, ListQuery, WaitQuery } from "../schemas";
import {
  cancelExecution,
  deleteExecution,
  execute,
  getExecution,
  listOwnExecutions,
  submit,
  waitForExecution,
} from "../service/executions";
import { setRateHeaders } from "./rate-headers";
import { serviceContext } from "./service-context";

export const executions = new Hono<TenantEnv>();
executions.use(requireApiKey);

executions.post("/", async (c) => {
  const job = await readJsonBody(c.req.raw, ExecutionRequest);
  if (job.async) {
    const { progress, rate } = await submit(serviceContext(c), job);
    setRateHeaders(c, rate);
    c.header("Location", `/v1/executions/${progress.id}`);
    return c.json(progress, 202);
  }
  const { result, rate } = await execute(serviceContext(c), job);
  setRateHeaders(c, rate);
  return c.json(result, result.error ? ERROR_STATUS[result.error.code] : 200);
});

executions.get("/", async (c) => {
  const query = readQuery(c.req.url, ListQuery);
  return c.json(await listOwnExecutions(serviceContext(c), query));
});

executions.get("/:id", async (c) => c.json(await getExecution(serviceContext(c), c.req.param("id"))));

executions.post("/:id/wait", async (c) => {
  const { timeout } = readQuery(c.req.url, WaitQuery);
  const outcome = await waitForExecution(serviceContext(c), c.req.param("id"), timeout);
  // A finished job answers 200 with its result; one still running, 202 with its progress.
  return c.json(outcome, isFinished(outcome) ? 200 : 202);
});

executions.post("/:id/cancel", async (c) => c.json(await cancelExecution(serviceContext(c), c.req.param("id"))));

executions.delete("/:id", async (c) => {
  await deleteExecution(serviceContext(c), c.req.param("id"));
  return c.body(null, 204);
});
