/** Reads a route's query string through its zod schema; a violation is 422 VALIDATION_ERROR with the issues. */
import type { z } from "zod";
import { CordonError, ErrorCode } from "../errors";

export function readQuery<S extends z.ZodType>(url: string, schema: S): z.infer<S> {
  const parsed = schema.safeParse(Object.fromEntries(new URL(url).searchParams));
  if (!parsed.success) throw validationError("the query string does not match the schema", parsed.error);
  return parsed.data;
}

export function validationError(message: string, error: z.ZodError): CordonError {
  return new CordonError(ErrorCode.VALIDATION_ERROR, message, {
    issues: error.issues.map((issue) => ({
      path: issue.path.map(String).join("."),
      message: issue.message,
      code: issue.code,
    })),
  });
}
