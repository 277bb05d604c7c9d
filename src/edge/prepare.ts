/**
 * Turns a validated execution request into a runner request: static checks and instrumentation of the
 * code, clamped limits, the inputs and the request for a `{ fetch }` export. Refusals are thrown as
 * CordonError before anything runs (such a request is not an accepted job). No I/O.
 */
import { CordonError, ErrorCode } from "../errors";
import { clampLimits, EDGE_OUTPUT_BOUNDS, type EffectiveLimits } from "../policy/limits";
import type { ExecutionRequest } from "../schemas";
import { instrumentJob, type ExportKind } from "./instrument";
import { isolateModules } from "./modules";
import type { FetchRequestSpec, RunnerRequest } from "./protocol";
import type { SourceMapV3 } from "./source-map";
import type { z } from "zod";

/** Origin of the request handed to a job's `fetch` export; `.invalid` never resolves anywhere. */
export const JOB_REQUEST_ORIGIN = "https://job.cordon.invalid";

export interface PreparedJob {
  runnerRequest: RunnerRequest;
  limits: EffectiveLimits;
  sourceMap: SourceMapV3;
  exportKind: ExportKind;
}

export function prepareEdgeJob(job: ExecutionRequest, executionId: string, now: number): PreparedJob {
  const instrumented = instrumentJob(job.code);
  if (!instrumented.ok) {
    switch (instrumented.kind) {
      case "syntax":
        throw new CordonError(ErrorCode.VALIDATION_ERROR, `syntax error: ${instrumented.message}`, {
          line: instrumented.line,
          column: instrumented.column,
        });
      case "no-default-export":
        throw new CordonError(ErrorCode.VALIDATION_ERROR, instrumented.message);
      case "violations":
        throw new CordonError(ErrorCode.SANDBOX_SECURITY_VIOLATION, "the code uses constructs edge jobs may not use", {
          reasons: instrumented.violations,
        });
    }
  }
  if (job.test && instrumented.exportKind === "fetch-handler") {
    throw new CordonError(
      ErrorCode.VALIDATION_ERROR,
      "test cases need a default-exported function, not a { fetch } handler",
    );
  }

  const limits = clampLimits({
    timeoutMs: job.limits?.timeout ?? job.timeout,
    cpuTimeMs: job.limits?.cpuTime,
    memoryMb: job.limits?.memory ?? job.memory,
  });
  const inputs = job.test ? job.test.cases.map((testCase) => testCase.input) : [job.input ?? null];
  return {
    limits,
    sourceMap: instrumented.map,
    exportKind: instrumented.exportKind,
    runnerRequest: {
      executionId,
      modules: isolateModules(instrumented.code),
      timeoutMs: limits.timeoutMs,
      cpuTimeMs: limits.cpuTimeMs,
      memoryMb: limits.memoryMb,
      spec: {
        executionId,
        deadline: now + limits.timeoutMs,
        captureConsole: job.captureConsole,
        ...EDGE_OUTPUT_BOUNDS,
        inputs,
        request: jobRequest(job),
      },
    },
  };
}

/**
 * The request a `{ fetch }` export receives: `job.request` if given (method, path, headers, body),
 * else a POST of `input` as JSON to `/`. GET and HEAD never carry a body.
 */
function jobRequest(job: ExecutionRequest): z.infer<typeof FetchRequestSpec> {
  const spec = job.request ?? { method: "POST", path: "/", headers: {}, body: undefined };
  const derivedBody = job.input === undefined ? null : JSON.stringify(job.input);
  const body = spec.method === "GET" || spec.method === "HEAD" ? null : (spec.body ?? derivedBody);
  const headers = { ...spec.headers };
  if (
    body !== null &&
    spec.body == null &&
    !Object.keys(headers).some((name) => name.toLowerCase() === "content-type")
  ) {
    headers["content-type"] = "application/json";
  }
  return { method: spec.method, url: new URL(spec.path, JOB_REQUEST_ORIGIN).href, headers, body };
}
