/** `/v1/executions`: run a job, list the tenant's executions, read one back. */
import { Hono } from "hono";
import { z } from "zod";
import { CordonError, ERROR_STATUS, ErrorCode } from "../errors";
import { runEdgeJob } from "../edge/execute";
import { prepareEdgeJob } from "../edge/prepare";
import { edgeRunnerFor } from "../edge/select-runner";
import { newId } from "../ids";
import { requireApiKey, type TenantEnv } from "../middleware/auth";
import { readJsonBody } from "../middleware/json-body";
import { readQuery } from "../middleware/query";
import { admitExecution } from "../middleware/rate-limit";
import { effectiveTrustLevel } from "../policy/admission";
import { ExecutionRequest, ExecutionStatus } from "../schemas";
import { decodeCursor, findExecution, listExecutions } from "../store/executions";

export const executions = new Hono<TenantEnv>();
executions.use(requireApiKey);

executions.post("/", async (c) => {
  const caller = c.get("caller");
  const job = await readJsonBody(c.req.raw, ExecutionRequest);
  const trustLevel = effectiveTrustLevel(job.trustLevel, caller.tenant.maxTrustLevel, job.runtime);
  const acceptedAt = new Date();
  // Static checks run before admission, so refused code does not use up the tenant's quota.
  const prepared = prepareEdgeJob(job, { executionId: newId("exec"), trustLevel, acceptedAt: acceptedAt.getTime() });
  const admission = await admitExecution(c, caller, prepared.limits.timeoutMs);
  try {
    const result = await runEdgeJob(job, prepared, {
      runner: edgeRunnerFor(c.env),
      db: c.env.DB,
      tenantId: caller.tenant.id,
      acceptedAt,
    });
    return c.json(result, result.error ? ERROR_STATUS[result.error.code] : 200);
  } finally {
    await admission.release();
  }
});

export const MAX_PAGE_SIZE = 100;

const ListQuery = z
  .object({
    status: ExecutionStatus.optional(),
    runtime: z.literal("edge").optional(),
    limit: z.coerce.number().int().min(1).max(MAX_PAGE_SIZE).default(20),
    cursor: z
      .string()
      .max(512)
      .refine((value) => decodeCursor(value) !== null, "not a cursor returned by this API")
      .optional(),
  })
  .strict();

executions.get("/", async (c) => {
  const query = readQuery(c.req.url, ListQuery);
  return c.json(await listExecutions(c.env.DB, c.get("caller").tenant.id, query));
});

executions.get("/:id", async (c) => {
  const id = c.req.param("id");
  const result = await findExecution(c.env.DB, c.get("caller").tenant.id, id);
  // Another tenant's id answers exactly like an id that does not exist.
  if (!result) throw new CordonError(ErrorCode.NOT_FOUND, `no execution with id ${id}`);
  return c.json(result);
});
