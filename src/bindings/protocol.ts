/**
 * What a job's bindings can ask for, and what they answer. Calls come from code we do not trust (the
 * job, through the harness), so they are parsed with these schemas before anything runs; answers are
 * data, never thrown across RPC.
 */
import { z } from "zod";
import type { ErrorBody } from "../errors";

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

export type BindingAnswer = { ok: true; value: unknown } | { ok: false; error: ErrorBody };

/** What a job's bindings did, for its metrics. */
export interface BindingCounters {
  dbQueries: number;
  dbRejected: number;
  kvReads: number;
  kvWrites: number;
}
