/** `/v1/executions`: run a job and read stored results. */
import { Hono } from "hono";
import { CordonError, ERROR_STATUS, ErrorCode } from "../errors";
import { executeEdgeJob } from "../edge/execute";
import { edgeRunnerFor } from "../edge/select-runner";
import { readJsonBody } from "../middleware/json-body";
import { ExecutionRequest } from "../schemas";
import { findExecution } from "../store/executions";

export const executions = new Hono<{ Bindings: Env }>();

executions.post("/", async (c) => {
  const job = await readJsonBody(c.req.raw, ExecutionRequest);
  const result = await executeEdgeJob(job, edgeRunnerFor(c.env), c.env.DB);
  return c.json(result, result.error ? ERROR_STATUS[result.error.code] : 200);
});

executions.get("/:id", async (c) => {
  const result = await findExecution(c.env.DB, c.req.param("id"));
  if (!result) throw new CordonError(ErrorCode.NOT_FOUND, `no execution with id ${c.req.param("id")}`);
  return c.json(result);
});
