/**
 * Runs one edge job in a fresh isolate through a Worker Loader binding and returns a runner reply.
 * Used in-process by the dispatcher in production and by the runner Worker of the local sandbox host.
 * Never throws: a failure of the isolate itself comes back as `{ ok: false, error }`.
 */
import { ErrorCode } from "../errors";
import { activateSession } from "../bindings/entrypoint";
import { runWithEgress } from "../egress/run";
import { boundReport } from "./bound-report";
import { JOB_COMPATIBILITY_DATE, JOB_COMPATIBILITY_FLAGS } from "./job-runtime";
import { decodeReport, type EdgeRunner, type RunnerReply, type RunnerRequest } from "./protocol";

interface HarnessEntrypoint {
  /** The report as JSON text (see MAX_REPORT_CHARS). */
  run(spec: RunnerRequest["spec"]): Promise<unknown>;
}

/**
 * The production runner: the dispatcher's own Worker Loader. The job's bindings are this Worker's
 * JobBindings entrypoint with the job's id as props (none for a job offered no binding: handing a
 * stub in costs every load); its session is active while the job runs.
 */
export function loaderRunner(loader: WorkerLoader, exports: Cloudflare.Exports): EdgeRunner {
  return {
    async run(request, session) {
      const deactivate = activateSession(session);
      try {
        const bindings =
          request.spec.bindings.length > 0
            ? exports.JobBindings({ props: { executionId: request.executionId } })
            : undefined;
        return await runWithEgress(request.executionId, request.network, exports.EgressGateway, (outbound) =>
          runInLoader(loader, request, bindings, outbound),
        );
      } finally {
        deactivate();
      }
    },
    // A loaded isolate cannot be stopped from outside; Cloudflare's cpuMs limit bounds it, and the
    // tracker has already recorded the cancellation.
    cancel: async () => undefined,
  };
}

/** `bindings` is an RPC stub with `call(raw) → BindingAnswer`, or undefined for a job with none. */
export async function runInLoader(
  loader: WorkerLoader,
  request: RunnerRequest,
  bindings?: unknown,
  /** The egress gateway for a job with network; null: fetch() and connect() fail inside the runtime. */
  outbound: Fetcher | null = null,
): Promise<RunnerReply> {
  try {
    const worker = loader.load({
      compatibilityDate: JOB_COMPATIBILITY_DATE,
      compatibilityFlags: [...JOB_COMPATIBILITY_FLAGS],
      mainModule: "harness.js",
      modules: request.modules,
      env: bindings === undefined ? {} : { BINDINGS: bindings },
      // Without network, fetch() and connect() fail inside the runtime; with it, they reach the gateway.
      globalOutbound: outbound,
      // Enforced by Cloudflare in production (local workerd ignores them; the guard covers locally).
      // Each job fetch is one subrequest to the gateway.
      limits: { cpuMs: request.cpuTimeMs, subRequests: request.network?.maxRequests ?? 0 },
    });
    const harness = worker.getEntrypoint("Harness") as unknown as HarnessEntrypoint;
    const decoded = decodeReport(await harness.run(request.spec));
    if (!decoded.ok) return crashed(decoded.message);
    // Parsed for its shape, then bounded: the harness shares its realm with the job.
    return { ok: true, report: boundReport(decoded.report, request.spec) };
  } catch (error) {
    return classifyIsolateFailure(error);
  }
}

/**
 * The platform reports a killed isolate only as an exception message; this is the one place that
 * reads it, at the edge of what we control.
 */
function classifyIsolateFailure(error: unknown): RunnerReply {
  const message = error instanceof Error ? error.message : String(error);
  if (/cpu time|exceeded.*time|timed out/i.test(message)) {
    return { ok: false, error: { code: ErrorCode.SANDBOX_TIMEOUT, message: `the isolate was stopped: ${message}` } };
  }
  if (/memory/i.test(message)) {
    return {
      ok: false,
      error: { code: ErrorCode.SANDBOX_MEMORY_LIMIT, message: `the isolate was stopped: ${message}` },
    };
  }
  return crashed(message);
}

function crashed(message: string): RunnerReply {
  return { ok: false, error: { code: ErrorCode.SANDBOX_RUNNER_CRASHED, message } };
}
