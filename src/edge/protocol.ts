/**
 * The contract between the dispatcher and an edge runner (in-process, or the runner Worker behind the
 * local sandbox host). Both directions are validated with these schemas: the reply is built next to
 * code we do not trust, so it is parsed, never cast.
 */
import { z } from "zod";
import { ErrorCode } from "../errors";
import type { BindingSession } from "../bindings/session";
import { EgressReport } from "../egress/meter";
import { EgressPolicy } from "../egress/policy";
import { TRUST_LEVELS } from "../policy/trust";
import { decodeJsonText } from "../json-text";

const jsonValue = z.json();

export const FetchRequestSpec = z.object({
  method: z.string(),
  url: z.string(),
  headers: z.record(z.string(), z.string()),
  body: z.string().nullable(),
});

export const HarnessSpec = z.object({
  executionId: z.string(),
  /** Epoch milliseconds at which the guard trips and the harness stops waiting. */
  deadline: z.number(),
  captureConsole: z.boolean(),
  maxLogEntries: z.number().int().positive(),
  maxLogBytes: z.number().int().positive(),
  maxLogMessageChars: z.number().int().positive(),
  maxOutputBytes: z.number().int().positive(),
  /** One call per input for a function export. */
  inputs: z.array(jsonValue),
  /** The request sent to a Worker `{ fetch }` export. */
  request: FetchRequestSpec,
  /** Bindings the job's `env` offers (the dispatcher still checks every call). */
  bindings: z.array(z.enum(["DB", "KV"])),
  /** The job's `bindingCalls` limit: calls past it are refused before they leave the isolate. */
  maxBindingCalls: z.number().int().nonnegative(),
  /** Whether fetch goes to the egress gateway (else it is trapped). */
  network: z.boolean(),
});
export type HarnessSpec = z.infer<typeof HarnessSpec>;

export const RunnerRequest = z.object({
  executionId: z.string(),
  /** The job's trust level: runners are never shared across cordons. */
  cordon: z.enum(TRUST_LEVELS),
  /** The job's egress policy; null: no network (globalOutbound null). */
  network: EgressPolicy.nullable(),
  modules: z.record(z.string(), z.string()),
  spec: HarnessSpec,
  timeoutMs: z.number().int().positive(),
  cpuTimeMs: z.number().int().positive(),
  memoryMb: z.number().int().positive(),
});
export type RunnerRequest = z.infer<typeof RunnerRequest>;

const ErrorInfo = z.object({
  name: z.string(),
  message: z.string(),
  stack: z.string(),
  /** Set when the error is a binding refusal the harness itself raised: the refusal's code survives. */
  code: z.string().optional(),
  rule: z.string().optional(),
});
export type ErrorInfo = z.infer<typeof ErrorInfo>;

export const CallOutcome = z.discriminatedUnion("ok", [
  z.object({ ok: z.literal(true), outputJson: z.string() }),
  z.object({ ok: z.literal(false), error: ErrorInfo }),
]);
export type CallOutcome = z.infer<typeof CallOutcome>;

export const LogLevel = z.enum(["log", "info", "warn", "error", "debug"]);
export const LogEntry = z.object({ level: LogLevel, message: z.string(), timestamp: z.number() });
export type LogEntry = z.infer<typeof LogEntry>;

export const HarnessReport = z.object({
  exportKind: z.enum(["function", "fetch-handler", "invalid"]),
  loadError: ErrorInfo.nullable(),
  calls: z.array(CallOutcome),
  logs: z.array(LogEntry),
  logBytes: z.number(),
  logsDropped: z.number().int().min(0),
  network: z.array(z.object({ host: z.string(), via: z.string() })),
  guard: z.object({ ticks: z.number(), tripped: z.boolean(), stack: z.string().nullable() }),
  runMs: z.number(),
});
export type HarnessReport = z.infer<typeof HarnessReport>;

/**
 * The most characters of JSON a harness report may have. The report crosses as JSON text so that its
 * size is a string's length, which the job cannot patch: the harness sends nothing longer, and the
 * runtime would otherwise let a job's forged report put 32 MiB into the dispatcher's memory. A
 * stored result holds at most 1.9 MB (store/storable.ts), so nothing a longer report carries could be
 * kept anyway.
 */
export const MAX_REPORT_CHARS = 4 * 1024 * 1024;
/** report → calls → outcome → error: outputs are JSON text inside it, so a report never nests deeper. */
const MAX_REPORT_DEPTH = 4;

/** The harness's report from its JSON text, or why it is not one. */
export function decodeReport(raw: unknown): { ok: true; report: HarnessReport } | { ok: false; message: string } {
  const decoded = decodeJsonText(raw, HarnessReport, { maxChars: MAX_REPORT_CHARS, maxDepth: MAX_REPORT_DEPTH });
  if (decoded.ok) return { ok: true, report: decoded.value };
  const { problem } = decoded;
  switch (problem.kind) {
    case "not_text":
      return { ok: false, message: "the harness's report is not JSON text" };
    case "too_long":
      return {
        ok: false,
        message: `the harness's report has ${problem.length} characters; at most ${MAX_REPORT_CHARS}`,
      };
    case "too_deep":
      return { ok: false, message: "the harness's report nests too deep" };
    case "not_json":
      return { ok: false, message: "the harness's report is not JSON" };
    case "schema":
      return { ok: false, message: `the harness returned a malformed report: ${problem.issue}` };
  }
}

/** A runner-level failure: the isolate or the process holding it did not produce a report. */
export const RunnerFailure = z.object({
  code: z.enum([
    ErrorCode.SANDBOX_TIMEOUT,
    ErrorCode.SANDBOX_MEMORY_LIMIT,
    ErrorCode.SANDBOX_RUNNER_CRASHED,
    ErrorCode.SANDBOX_UNAVAILABLE,
  ]),
  message: z.string(),
});
export type RunnerFailure = z.infer<typeof RunnerFailure>;

export const RunnerReply = z.discriminatedUnion("ok", [
  z.object({ ok: z.literal(true), report: HarnessReport, egress: EgressReport.optional() }),
  z.object({ ok: z.literal(false), error: RunnerFailure, egress: EgressReport.optional() }),
]);
export type RunnerReply = z.infer<typeof RunnerReply>;

/** Where edge jobs run: in this Worker's own Worker Loader, or in a supervised runner process. */
export interface EdgeRunner {
  /** Runs the job; its binding calls are answered by `session`. Never throws. */
  run(request: RunnerRequest, session: BindingSession): Promise<RunnerReply>;
  /** Stops the job's runner if this home can (best effort; never throws). */
  cancel(executionId: string): Promise<void>;
}
