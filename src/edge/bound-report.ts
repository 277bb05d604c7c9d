/**
 * The harness's report, bounded outside the isolate. The harness enforces the same limits, but it
 * shares its realm with the job, which can patch what the harness counts with: a job that replaces
 * `TextEncoder.prototype.encode` would otherwise return any output and log any amount, whatever its
 * limits. These are the bounds that hold. No I/O.
 */
import { boundedError, boundedOutput, LogBudget, MAX_NAME_CHARS, MAX_STACK_CHARS } from "../untrusted-output";
import type { CallOutcome, ErrorInfo, HarnessReport, HarnessSpec, LogEntry } from "./protocol";

/** The harness records at most this many network attempts; the judge reads the first. */
const MAX_NETWORK_ATTEMPTS = 20;
const TRUNCATED_MESSAGE = "… [truncated]";

export function boundReport(report: HarnessReport, spec: HarnessSpec): HarnessReport {
  const logs = new LogBudget<LogEntry>(spec);
  for (const entry of report.logs) {
    const message =
      entry.message.length > spec.maxLogMessageChars
        ? entry.message.slice(0, spec.maxLogMessageChars) + TRUNCATED_MESSAGE
        : entry.message;
    logs.offer({ level: entry.level, message, timestamp: entry.timestamp });
  }
  return {
    exportKind: report.exportKind,
    loadError: report.loadError === null ? null : boundedErrorInfo(report.loadError),
    // One call per input at most: anything beyond was not asked for.
    calls: report.calls
      .slice(0, spec.inputs.length)
      .map((call): CallOutcome =>
        call.ok
          ? boundedOutput(call.outputJson, spec.maxOutputBytes)
          : { ok: false, error: boundedErrorInfo(call.error) },
      ),
    logs: logs.entries,
    logBytes: logs.bytes,
    logsDropped: report.logsDropped + logs.dropped,
    network: report.network
      .slice(0, MAX_NETWORK_ATTEMPTS)
      .map(({ host, via }) => ({ host: host.slice(0, MAX_NAME_CHARS), via: via.slice(0, MAX_NAME_CHARS) })),
    guard: {
      ...report.guard,
      stack: report.guard.stack === null ? null : report.guard.stack.slice(0, MAX_STACK_CHARS),
    },
    runMs: report.runMs,
  };
}

function boundedErrorInfo(error: ErrorInfo): ErrorInfo {
  const { code, rule, ...info } = boundedError(error);
  return {
    ...info,
    ...(code === undefined ? {} : { code: code.slice(0, MAX_NAME_CHARS) }),
    ...(rule === undefined ? {} : { rule: rule.slice(0, MAX_NAME_CHARS) }),
  };
}
