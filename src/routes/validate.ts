/** `POST /v1/validate`: the static checks of a job's code at a trust level, without running it. */
import { Hono } from "hono";
import { requireApiKey, type TenantEnv } from "../middleware/auth";
import { readJsonBody } from "../middleware/json-body";
import { ValidateRequest } from "../schemas";
import { validateCode } from "../service/executions";
import { setRateHeaders } from "./rate-headers";
import { serviceContext } from "./service-context";

export const validate = new Hono<TenantEnv>();
validate.use(requireApiKey);

validate.post("/", async (c) => {
  const request = await readJsonBody(c.req.raw, ValidateRequest);
  const { report, rate } = await validateCode(serviceContext(c), request);
  setRateHeaders(c, rate);
  return c.json(report);
});
