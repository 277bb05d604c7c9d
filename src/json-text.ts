/**
 * JSON text that crossed over from next to a job's code (a binding call, a harness report): checked
 * to be a string, within a length and a nesting depth, before anything parses it, then validated by
 * its schema. The length is a string primitive's, which the job cannot patch. No I/O.
 */
import type { z } from "zod";
import { jsonNestsDeeperThan } from "./json-depth";

export type JsonTextProblem =
  | { kind: "not_text" }
  | { kind: "too_long"; length: number }
  | { kind: "too_deep" }
  | { kind: "not_json" }
  | { kind: "schema"; issue: string };

export function decodeJsonText<S extends z.ZodType>(
  raw: unknown,
  schema: S,
  bounds: { maxChars: number; maxDepth: number },
): { ok: true; value: z.infer<S> } | { ok: false; problem: JsonTextProblem } {
  if (typeof raw !== "string") return { ok: false, problem: { kind: "not_text" } };
  if (raw.length > bounds.maxChars) return { ok: false, problem: { kind: "too_long", length: raw.length } };
  if (jsonNestsDeeperThan(raw, bounds.maxDepth)) return { ok: false, problem: { kind: "too_deep" } };
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return { ok: false, problem: { kind: "not_json" } };
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) return { ok: false, problem: { kind: "schema", issue: parsed.error.issues[0]?.message ?? "" } };
  return { ok: true, value: parsed.data };
}
