/**
 * Turns a validated execution request into a runner request: static checks and instrumentation of the
 * code, clamped limits, the inputs and the request for a `{ fetch }` export. Refusals are thrown as
 * CordonError before anything runs (such a request is not an accepted job). No I/O.
 */
import { CordonError, ErrorCode } from "../errors";
import { LOG_BOUNDS, resolveLimits, type EffectiveLimits } from "../policy/limits";
import { CORDONS, type TrustLevel } from "../policy/trust";
import { admitNetwork, networkLimits } from "../policy/network";
import type { ExecutionRequest } from "../schemas";
import { instrumentJob, type ExportKind } from "./instrument";
import { isolateModules } from "./modules";
import type { FetchRequestSpec, RunnerRequest } from "./protocol";
import type { SourceMapV3 } from "./source-map";
import type { z } from "zod";

/** Origin of the request handed to a job's `fetch` export; `.invalid` never resolves anywhere. */
export const JOB_REQUEST_ORIGIN = "https://job.cordon.invalid";

export interface PreparedJob {
  runtime: "edge";
  executionId: string;
  runnerRequest: RunnerRequest;
  trustLevel: TrustLevel;
  limits: EffectiveLimits;
  sourceMap: SourceMapV3;
  exportKind: ExportKind;
}

export interface JobIdentity {
  executionId: string;
  /** The effective trust level (already checked against the tenant's ceiling). */
  trustLevel: TrustLevel;
  /** Epoch ms at which the job was accepted; its deadline counts from here. */
  acceptedAt: number;
}

export function prepareEdgeJob(job: ExecutionRequest, identity: JobIdentity): PreparedJob {
  const { executionId, trustLevel } = identity;
  const cordon = CORDONS[trustLevel];
  const instrumented = instrumentJob(job.code, { refusedGlobals: new Set(cordon.refusedConstructs) });
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

  const limits = resolveLimits(trustLevel, {
    timeoutMs: job.limits?.timeout ?? job.timeout,
    cpuTimeMs: job.limits?.cpuTime,
    memoryMb: job.limits?.memory ?? job.memory,
    logBytes: job.limits?.logBytes,
    outputBytes: job.limits?.outputBytes,
    bindingCalls: job.limits?.bindingCalls,
  });
  const network = admitNetwork(job.limits?.network, trustLevel);
  Object.assign(limits, networkLimits(network));
  const inputs = job.test ? job.test.cases.map((testCase) => testCase.input) : [job.input ?? null];
  return {
    runtime: "edge",
    executionId,
    limits,
    trustLevel,
    sourceMap: instrumented.map,
    exportKind: instrumented.exportKind,
    runnerRequest: {
      executionId,
      cordon: trustLevel,
      network,
      modules: isolateModules(instrumented.code),
      timeoutMs: limits.timeoutMs,
      cpuTimeMs: limits.cpuTimeMs,
      memoryMb: limits.memoryMb,
      spec: {
        executionId,
        deadline: identity.acceptedAt + limits.timeoutMs,
        captureConsole: job.captureConsole,
        ...LOG_BOUNDS,
        maxLogBytes: limits.logBytes,
        maxOutputBytes: limits.outputBytes,
        inputs,
        request: jobRequest(job),
        // A job that cannot read its ctx gets none (see readsContext in instrument.ts).
        bindings: instrumented.readsContext ? [...cordon.bindings] : [],
        maxBindingCalls: limits.bindingCalls,
        network: network !== null,
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
