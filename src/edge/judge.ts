/**
 * Turns a runner reply into the job's result: decides the one error code, maps stack traces back to
 * the job's source, compares test cases. Runs in the dispatcher, never inside the isolate. The report
 * itself comes from the job's realm, which the job can tamper with (down to what JSON.stringify
 * writes), so what decides a verdict beyond the job's own output is taken from outside it: the
 * deadline from the dispatcher's clock, test expectations from the request, and an error code only
 * from the few a binding refusal carries. No I/O.
 */
import type { BindingCounters } from "../bindings/protocol";
import type { EgressReport } from "../egress/meter";
import { egressMetrics, egressRefusal } from "../egress/verdict";
import { ErrorCode, isErrorCode } from "../errors";
import type { ErrorBody } from "../errors";
import type { ExecutionRequest, ExecutionResult, Metrics } from "../schemas";
import { emptyMetrics, resultBase, type JobRecord } from "../results";
import { jsonEqual } from "./json-equal";
import type { PreparedJob } from "./prepare";
import type { CallOutcome, ErrorInfo, HarnessReport, RunnerReply } from "./protocol";
import { firstJobLocation, remapStack, type SourceMapV3 } from "./source-map";
import { OUTPUT_TOO_LARGE_ERROR } from "../untrusted-output";

type Verdict = Pick<ExecutionResult, "status" | "success" | "output" | "tests" | "error">;

/**
 * The codes a binding refusal carries into the job (src/bindings): the only codes a report may name.
 * Any other (INTERNAL_ERROR, RATE_LIMITED…) would be the job speaking for the platform.
 */
const BINDING_REFUSAL_CODES: ReadonlySet<string> = new Set([
  ErrorCode.SANDBOX_SECURITY_VIOLATION,
  ErrorCode.SANDBOX_RUNTIME_ERROR,
  ErrorCode.SANDBOX_OUTPUT_TOO_LARGE,
]);

export function judge(
  record: JobRecord,
  job: ExecutionRequest,
  prepared: PreparedJob,
  reply: RunnerReply,
  bindings: BindingCounters,
): ExecutionResult {
  const base = resultBase(record, job, prepared);
  const duration = record.finishedAt.getTime() - record.createdAt.getTime();
  if (!reply.ok) {
    const error: ErrorBody = { code: reply.error.code, message: reply.error.message, logsLost: true };
    return {
      ...base,
      status: reply.error.code === ErrorCode.SANDBOX_TIMEOUT ? "timed_out" : "failed",
      success: false,
      output: null,
      logs: [],
      logsTruncated: false,
      metrics: { ...emptyMetrics(duration), ...bindingMetrics(bindings), ...egressMetrics(reply.egress, 0) },
      error,
    };
  }
  const report = reply.report;
  const late = record.finishedAt.getTime() > prepared.runnerRequest.spec.deadline;
  const verdict = judgeReport(job, prepared, report, reply.egress, late);
  return {
    ...base,
    ...verdict,
    logs: report.logs,
    logsTruncated: report.logsDropped > 0,
    metrics: {
      ...emptyMetrics(duration),
      runTime: report.runMs,
      logBytes: report.logBytes,
      logsDropped: report.logsDropped,
      outputBytes: report.calls.reduce((sum, call) => sum + (call.ok ? call.outputJson.length : 0), 0),
      checkpoints: report.guard.ticks,
      ...bindingMetrics(bindings),
      ...egressMetrics(reply.egress, report.network.length),
    },
  };
}

function judgeReport(
  job: ExecutionRequest,
  prepared: PreparedJob,
  report: HarnessReport,
  egress: EgressReport | undefined,
  /** The reply reached the dispatcher after the job's deadline: a timeout, whatever the report says. */
  late: boolean,
): Verdict {
  const map = prepared.sourceMap;
  if (report.guard.tripped || late) {
    const where = report.guard.stack ? firstJobLocation(remapStack(report.guard.stack, map)) : undefined;
    return failed(ErrorCode.SANDBOX_TIMEOUT, `the job ran past its timeout of ${prepared.limits.timeoutMs} ms`, {
      timeoutMs: prepared.limits.timeoutMs,
      ...(where ? { line: where.line, column: where.column } : {}),
    });
  }
  const refusal = egressRefusal(egress);
  if (refusal) return failed(ErrorCode.SANDBOX_NETWORK_BLOCKED, refusal.message, refusal.detail);
  const attempt = report.network[0];
  if (attempt) {
    return failed(
      ErrorCode.SANDBOX_NETWORK_BLOCKED,
      `network access is disabled for this job; it tried ${attempt.via} to ${attempt.host}`,
      {
        host: attempt.host,
        via: attempt.via,
      },
    );
  }
  if (report.loadError) {
    // The harness's stand-in for a report too large to leave the isolate.
    if (report.loadError.name === OUTPUT_TOO_LARGE_ERROR) {
      return failed(ErrorCode.SANDBOX_OUTPUT_TOO_LARGE, report.loadError.message);
    }
    return thrown(report.loadError, map, "the job module threw while loading");
  }
  if (report.exportKind === "invalid") {
    return failed(
      ErrorCode.SANDBOX_RUNTIME_ERROR,
      "the default export must be a function (input, ctx) or an object with a fetch(request, env, ctx) method",
    );
  }
  if (job.test) return judgeTests(job.test.cases, report.calls, map);

  const call = report.calls[0];
  if (!call) return failed(ErrorCode.SANDBOX_RUNTIME_ERROR, "the job produced no result");
  if (!call.ok) return callFailure(call.error, map);
  return {
    status: "succeeded",
    success: true,
    output: JSON.parse(call.outputJson) as unknown as ExecutionResult["output"],
  };
}

function judgeTests(
  cases: NonNullable<ExecutionRequest["test"]>["cases"],
  calls: CallOutcome[],
  map: SourceMapV3,
): Verdict {
  const results = cases.map((testCase, index) => {
    const call = calls[index];
    const common = { index, input: testCase.input, expected: testCase.expected };
    if (!call) return { ...common, passed: false, error: { name: "NotRun", message: "the case did not run" } };
    if (!call.ok) {
      const error = callFailure(call.error, map).error;
      return {
        ...common,
        passed: false,
        error: { name: call.error.name, message: error?.message ?? call.error.message },
      };
    }
    const actual = JSON.parse(call.outputJson) as unknown as ExecutionResult["output"];
    return { ...common, passed: jsonEqual(actual, testCase.expected), actual };
  });
  return {
    status: "succeeded",
    success: true,
    output: null,
    tests: { cases: results, allTestsPassed: results.every((result) => result.passed) },
  };
}

function callFailure(error: ErrorInfo, map: SourceMapV3): Verdict {
  if (error.name === OUTPUT_TOO_LARGE_ERROR) return failed(ErrorCode.SANDBOX_OUTPUT_TOO_LARGE, error.message);
  // A binding refusal the job did not catch keeps its own code (e.g. SANDBOX_SECURITY_VIOLATION).
  if (error.code !== undefined && BINDING_REFUSAL_CODES.has(error.code) && isErrorCode(error.code)) {
    const stack = error.stack ? remapStack(error.stack, map) : "";
    const where = firstJobLocation(stack);
    return failed(error.code, error.message, {
      ...(error.rule === undefined ? {} : { rule: error.rule }),
      ...(where ? { line: where.line, column: where.column } : {}),
    });
  }
  return thrown(error, map, undefined);
}

function bindingMetrics(
  counters: BindingCounters,
): Pick<Metrics, "bindingCalls" | "dbQueries" | "dbRejected" | "kvReads" | "kvWrites"> {
  return {
    ...counters,
    bindingCalls: { db: counters.dbQueries, kv: counters.kvReads + counters.kvWrites },
  };
}

function thrown(error: ErrorInfo, map: SourceMapV3, context: string | undefined): Verdict {
  const stack = error.stack ? remapStack(error.stack, map) : "";
  const where = firstJobLocation(stack);
  const message = `${error.name}: ${error.message}`;
  return failed(ErrorCode.SANDBOX_RUNTIME_ERROR, context ? `${context}: ${message}` : message, {
    name: error.name,
    stack,
    ...(where ? { line: where.line, column: where.column } : {}),
  });
}

function failed(code: ErrorBody["code"], message: string, detail: Record<string, unknown> = {}): Verdict {
  return {
    status: code === ErrorCode.SANDBOX_TIMEOUT ? "timed_out" : "failed",
    success: false,
    output: null,
    error: { ...detail, code, message },
  };
}
