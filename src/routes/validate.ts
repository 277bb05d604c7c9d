/** `POST /v1/validate`: the static checks of a job's code at a trust level, without running it. */
import { Hono } from "hono";
import { z } from "zod";
import { instrumentJob } from "../edge/instrument";
import { requireApiKey, type TenantEnv } from "../middleware/auth";
import { readJsonBody } from "../middleware/json-body";
import { effectiveTrustLevel } from "../policy/admission";
import { CORDONS } from "../policy/trust";
import { MAX_CODE_CHARS, TrustLevel } from "../schemas";

const ValidateRequest = z
  .object({
    runtime: z.literal("edge").default("edge"),
    code: z.string().min(1).max(MAX_CODE_CHARS),
    trustLevel: TrustLevel.optional(),
  })
  .strict();

export const validate = new Hono<TenantEnv>();
validate.use(requireApiKey);

validate.post("/", async (c) => {
  const request = await readJsonBody(c.req.raw, ValidateRequest);
  const trustLevel = effectiveTrustLevel(request.trustLevel, c.get("caller").tenant.maxTrustLevel, request.runtime);
  const checked = instrumentJob(request.code, { refusedGlobals: new Set(CORDONS[trustLevel].refusedConstructs) });
  if (checked.ok) return c.json({ valid: true, trustLevel, exportKind: checked.exportKind, problems: [] });
  const problems =
    checked.kind === "violations"
      ? checked.violations
      : checked.kind === "syntax"
        ? [{ rule: "syntax-error", message: checked.message, line: checked.line, column: checked.column }]
        : [{ rule: "no-default-export", message: checked.message }];
  return c.json({ valid: false, trustLevel, problems });
});
