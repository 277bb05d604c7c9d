/**
 * Turns a node home's reply into the job's result, with the same schema and error codes as edge
 * jobs. Which limit fired is the home's verdict (from the kernel), never the job's. No I/O.
 */
import { ErrorCode, type ErrorBody } from "../errors";
import { emptyMetrics, resultBase, type JobRecord } from "../results";
import { jsonEqual } from "../edge/json-equal";
import { egressMetrics, egressRefusal } from "../egress/verdict";
import type { ExecutionRequest, ExecutionResult } from "../schemas";
import type { PreparedNodeJob } from "./prepare";
import type { NodeRunReplySchema } from "./protocol";
import type { z } from "zod";
import { OUTPUT_TOO_LARGE_ERROR } from "../untrusted-output";

type NodeRunReply = z.infer<typeof NodeRunReplySchema>;

export function judgeNode(
  record: JobRecord,
  job: ExecutionRequest,
  prepared: PreparedNodeJob,
  reply: NodeRunReply,
): ExecutionResult {
  const duration = record.finishedAt.getTime() - record.createdAt.getTime();
  const base = resultBase(record, job, prepared);
  if (!reply.ok) {
    // Packages that could not be installed say why (e.g. not-found: a version that does not exist).
    const detail = reply.error.installError ? { installError: reply.error.installError } : {};
    return {
      ...base,
      ...failure(reply.error.code, reply.error.message, detail),
      logs: [],
      logsTruncated: false,
      metrics: emptyMetrics(duration),
    };
  }
  const report = reply.report;
  const common = {
    ...base,
    logs: report.logs,
    logsTruncated: report.logsDropped > 0,
    stdout: report.stdout,
    stderr: report.stderr,
    metrics: {
      ...emptyMetrics(duration),
      runTime: report.metrics.runMs,
      cpuTime: report.metrics.cpuTimeMs,
      memory: report.metrics.peakMemoryMb,
      filesWritten: report.metrics.filesWritten,
      coldStart: report.metrics.coldStart ?? true,
      logBytes: report.logBytes,
      logsDropped: report.logsDropped,
      outputBytes: report.calls.reduce((sum, call) => sum + (call.ok ? call.outputJson.length : 0), 0),
      ...egressMetrics(report.egress),
    },
  };
  if (report.limitHit) {
    return { ...common, ...failure(report.limitHit.code, report.limitHit.message, { limit: report.limitHit.limit }) };
  }
  const refusal = egressRefusal(report.egress);
  if (refusal) return { ...common, ...failure(ErrorCode.SANDBOX_NETWORK_BLOCKED, refusal.message, refusal.detail) };
  if (job.test) {
    const cases = job.test.cases.map((testCase, index) => {
      const call = report.calls[index];
      const shared = { index, input: testCase.input, expected: testCase.expected };
      if (!call) return { ...shared, passed: false, error: { name: "NotRun", message: "the case did not run" } };
      if (!call.ok) return { ...shared, passed: false, error: { name: call.error.name, message: call.error.message } };
      const actual = JSON.parse(call.outputJson) as ExecutionResult["output"];
      return { ...shared, passed: jsonEqual(actual, testCase.expected), actual };
    });
    return {
      ...common,
      status: "succeeded",
      success: true,
      output: null,
      tests: { cases, allTestsPassed: cases.every((c) => c.passed) },
    };
  }
  const call = report.calls[0];
  if (!call) return { ...common, ...failure(ErrorCode.SANDBOX_RUNTIME_ERROR, "the job produced no result") };
  if (!call.ok) {
    const code =
      call.error.name === OUTPUT_TOO_LARGE_ERROR ? ErrorCode.SANDBOX_OUTPUT_TOO_LARGE : ErrorCode.SANDBOX_RUNTIME_ERROR;
    return {
      ...common,
      ...failure(code, `${call.error.name}: ${call.error.message}`, { name: call.error.name, stack: call.error.stack }),
    };
  }
  return {
    ...common,
    status: "succeeded",
    success: true,
    output: JSON.parse(call.outputJson) as ExecutionResult["output"],
  };
}

function failure(code: ErrorBody["code"], message: string, detail: Record<string, unknown> = {}) {
  return {
    status: code === ErrorCode.SANDBOX_TIMEOUT ? ("timed_out" as const) : ("failed" as const),
    success: false,
    output: null,
    error: { ...detail, code, message },
  };
}
