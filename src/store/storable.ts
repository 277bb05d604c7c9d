/**
 * A result is stored as one JSON value in a row: of its tenant's ledger or its tracker (Durable Object
 * SQLite), then of the execution log (D1). On Cloudflare both refuse a value over 2 MB; local SQLite
 * takes far more, so nothing would fail before production. A result whose JSON is larger is cut here,
 * before it is stored or answered, so a caller always gets what is stored: first its logs, from the
 * last entry back (`logsTruncated`); then, if that is not enough, its output and its test cases'
 * actual values, and the job fails with SANDBOX_OUTPUT_TOO_LARGE. No I/O.
 */
import { ErrorCode } from "../errors";
import type { ExecutionResult } from "../schemas";

/** Under D1's and Durable Object SQLite's 2,000,000 bytes, with room for the log row's other columns. */
export const MAX_STORED_RESULT_BYTES = 1_900_000;

const encoder = new TextEncoder();

function jsonBytes(value: unknown): number {
  return encoder.encode(JSON.stringify(value)).byteLength;
}

export function storableResult(result: ExecutionResult): ExecutionResult {
  const size = jsonBytes(result);
  if (size <= MAX_STORED_RESULT_BYTES) return result;
  let rest: ExecutionResult = { ...result, logs: [] };
  if (jsonBytes(rest) > MAX_STORED_RESULT_BYTES) rest = withoutOutputs(rest, size);
  return withLogsThatFit(rest, result, MAX_STORED_RESULT_BYTES - jsonBytes(rest));
}

/** `rest` with the first of `result`'s log entries that fit in `room` bytes. */
function withLogsThatFit(rest: ExecutionResult, result: ExecutionResult, room: number): ExecutionResult {
  let used = 0;
  let kept = 0;
  for (const entry of result.logs) {
    // Each entry after the first also takes a comma.
    const size = jsonBytes(entry) + (kept === 0 ? 0 : 1);
    if (used + size > room) break;
    used += size;
    kept++;
  }
  const dropped = result.logs.length - kept;
  return {
    ...rest,
    logs: result.logs.slice(0, kept),
    logsTruncated: result.logsTruncated || dropped > 0,
    metrics: { ...rest.metrics, logsDropped: rest.metrics.logsDropped + dropped },
  };
}

function withoutOutputs(result: ExecutionResult, size: number): ExecutionResult {
  return {
    ...result,
    status: "failed",
    success: false,
    output: null,
    ...(result.tests
      ? { tests: { ...result.tests, cases: result.tests.cases.map(({ actual: _actual, ...testCase }) => testCase) } }
      : {}),
    error: {
      code: ErrorCode.SANDBOX_OUTPUT_TOO_LARGE,
      message: `the result is ${size} bytes of JSON; a stored result holds at most ${MAX_STORED_RESULT_BYTES}`,
      maxBytes: MAX_STORED_RESULT_BYTES,
    },
  };
}
