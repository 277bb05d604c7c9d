/** Reads a route's query string through its zod schema; a violation is 422 VALIDATION_ERROR with the issues. */
import type { z } from "zod";
import { CordonError, ErrorCode } from "../errors";
import { MAX_JSON_DEPTH } from "../json-depth";

export function readQuery<S extends z.ZodType>(url: string, schema: S): z.infer<S> {
  // An empty value is an absent one (`?timeout=` waits the default, not 0 ms: a number coerced from
  // "" would be 0).
  const given = [...new URL(url).searchParams].filter(([, value]) => value !== "");
  const parsed = schema.safeParse(Object.fromEntries(given));
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

/** What `subject` (a body, RPC arguments) gets when it nests deeper than MAX_JSON_DEPTH. */
export function nestsTooDeep(subject: string): CordonError {
  return new CordonError(ErrorCode.VALIDATION_ERROR, `${subject} nests too deeply`, {
    issues: [{ path: "", message: `arrays and objects nest at most ${MAX_JSON_DEPTH} levels deep`, code: "too_deep" }],
  });
}

/** What RPC arguments get when they hold one object twice (shared, or a cycle): JSON cannot. */
export function holdsSharedObject(subject: string): CordonError {
  return new CordonError(ErrorCode.VALIDATION_ERROR, `${subject} hold the same object twice`, {
    issues: [{ path: "", message: "every array and object appears once, as in JSON", code: "shared_object" }],
  });
}
