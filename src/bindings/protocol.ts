/**
 * What a job's bindings can ask for, and what they answer. Calls come from code we do not trust (the
 * job, through the harness), so they are parsed with these schemas before anything runs; answers are
 * data, never thrown across RPC.
 *
 * A call crosses to the dispatcher as JSON text, never as an object. An RPC argument is copied into
 * the dispatcher's memory before the dispatcher can look at it (the runtime caps a message at 32 MiB,
 * not the job), so the harness measures the text first (a string's length cannot be patched by the
 * job), sends at most MAX_BINDING_CALLS_IN_FLIGHT at a time and none past the job's quota: one job
 * holds at most 4 MiB of calls in the dispatcher, whatever it does.
 */
import { z } from "zod";
import type { ErrorBody } from "../errors";
import { decodeJsonText } from "../json-text";

/** The most characters of JSON one binding call may carry (a KV value is at most 128 KiB of it). */
export const MAX_BINDING_CALL_CHARS = 1024 * 1024;
/** Binding calls one job has on their way to the dispatcher at once; the rest wait in the harness. */
export const MAX_BINDING_CALLS_IN_FLIGHT = 4;
/** A call is an object holding at most an array of values: deeper text is not a call. */
const MAX_BINDING_CALL_DEPTH = 2;

const SqlParam = z.union([z.string(), z.number(), z.boolean(), z.null()]);
export const MAX_SQL_PARAMS = 100;

export const BindingCall = z.discriminatedUnion("method", [
  z.object({
    binding: z.literal("DB"),
    method: z.literal("query"),
    sql: z.string(),
    params: z.array(SqlParam).max(MAX_SQL_PARAMS),
  }),
  z.object({ binding: z.literal("KV"), method: z.literal("get"), key: z.string() }),
  z.object({
    binding: z.literal("KV"),
    method: z.literal("put"),
    key: z.string(),
    value: z.string(),
    expirationTtl: z.number().int().positive().optional(),
  }),
  z.object({ binding: z.literal("KV"), method: z.literal("delete"), key: z.string() }),
  z.object({
    binding: z.literal("KV"),
    method: z.literal("list"),
    prefix: z.string().optional(),
    cursor: z.string().optional(),
    limit: z.number().int().positive().optional(),
  }),
]);
export type BindingCall = z.infer<typeof BindingCall>;

/** A call's JSON text, checked for size and depth before it is parsed; the reason when it is refused. */
export function decodeBindingCall(
  raw: unknown,
): { ok: true; call: BindingCall } | { ok: false; rule: "malformed_call" | "call_too_large"; message: string } {
  const decoded = decodeJsonText(raw, BindingCall, {
    maxChars: MAX_BINDING_CALL_CHARS,
    maxDepth: MAX_BINDING_CALL_DEPTH,
  });
  if (decoded.ok) return { ok: true, call: decoded.value };
  const { problem } = decoded;
  switch (problem.kind) {
    case "too_long":
      return {
        ok: false,
        rule: "call_too_large",
        message: `a binding call carries at most ${MAX_BINDING_CALL_CHARS} characters of JSON; this one has ${problem.length}`,
      };
    case "not_text":
      return { ok: false, rule: "malformed_call", message: "a binding call is JSON text" };
    case "too_deep":
      return { ok: false, rule: "malformed_call", message: "malformed binding call: it nests too deep" };
    case "not_json":
      return { ok: false, rule: "malformed_call", message: "malformed binding call: not JSON" };
    case "schema":
      return { ok: false, rule: "malformed_call", message: `malformed binding call: ${problem.issue}` };
  }
}

export type BindingAnswer = { ok: true; value: unknown } | { ok: false; error: ErrorBody };

/** What a job's bindings did, for its metrics. */
export interface BindingCounters {
  dbQueries: number;
  dbRejected: number;
  kvReads: number;
  kvWrites: number;
}
