/**
 * Bounds on what comes back from next to a job's code: an edge harness's report, a sandbox's records.
 * The harnesses bound the same things, but they run where the job can patch what they count with
 * (TextEncoder, String.prototype.slice, Array.prototype.push…), so whatever reads their output bounds
 * it again here, out of the job's reach. No I/O.
 */
import { MAX_JSON_DEPTH, jsonNestsDeeperThan } from "./json-depth.ts";

export const MAX_NAME_CHARS = 256;
export const MAX_MESSAGE_CHARS = 16 * 1024;
export const MAX_STACK_CHARS = 16 * 1024;
/** The error name every runtime's harness gives an output over its limit; judged SANDBOX_OUTPUT_TOO_LARGE. */
export const OUTPUT_TOO_LARGE_ERROR = "CordonOutputTooLarge";
/** The error name of an output a harness reported that does not parse (judged SANDBOX_RUNTIME_ERROR). */
const MALFORMED_OUTPUT_ERROR = "CordonMalformedOutput";

export interface ErrorInfoLike {
  name: string;
  message: string;
  stack: string;
}

export interface LogEntryLike {
  message: string;
}

export type BoundedOutput = { ok: true; outputJson: string } | { ok: false; error: ErrorInfoLike };

const encoder = new TextEncoder();

/**
 * `outputJson` if it fits in `maxOutputBytes` (UTF-8), nests at most MAX_JSON_DEPTH levels and
 * parses, else the failure to report instead (SANDBOX_OUTPUT_TOO_LARGE for the first two).
 */
export function boundedOutput(outputJson: string, maxOutputBytes: number): BoundedOutput {
  // A UTF-16 unit is at least one UTF-8 byte: a longer string is too large without encoding it (it
  // may be as large as the job's memory).
  const size = outputJson.length > maxOutputBytes ? undefined : encoder.encode(outputJson).byteLength;
  if (size === undefined || size > maxOutputBytes) {
    return tooLarge(`the output is ${size ?? `more than ${maxOutputBytes}`} bytes; the limit is ${maxOutputBytes}`);
  }
  if (jsonNestsDeeperThan(outputJson)) {
    return tooLarge(`the output nests arrays and objects more than ${MAX_JSON_DEPTH} levels deep`);
  }
  // A harness only writes JSON.stringify's text; anything else came from a job that tampered with it.
  try {
    JSON.parse(outputJson);
  } catch {
    return {
      ok: false,
      error: { name: MALFORMED_OUTPUT_ERROR, message: "the reported output is not JSON", stack: "" },
    };
  }
  return { ok: true, outputJson };
}

function tooLarge(message: string): BoundedOutput {
  return { ok: false, error: { name: OUTPUT_TOO_LARGE_ERROR, message, stack: "" } };
}

/** The error with its name, message and stack cut to size; other fields are left to the caller. */
export function boundedError<T extends ErrorInfoLike>(error: T): T {
  return {
    ...error,
    name: error.name.slice(0, MAX_NAME_CHARS),
    message: error.message.slice(0, MAX_MESSAGE_CHARS),
    stack: error.stack.slice(0, MAX_STACK_CHARS),
  };
}

/** Keeps log entries while they fit in a count and a UTF-8 byte budget; counts the ones it refuses. */
export class LogBudget<T extends LogEntryLike> {
  readonly entries: T[] = [];
  bytes = 0;
  dropped = 0;
  readonly #maxEntries: number;
  readonly #maxBytes: number;

  constructor(limits: { maxLogEntries: number; maxLogBytes: number }) {
    this.#maxEntries = limits.maxLogEntries;
    this.#maxBytes = limits.maxLogBytes;
  }

  /** Keeps `entry` if it fits, else counts it dropped. */
  offer(entry: T): void {
    const room = this.#maxBytes - this.bytes;
    const size = entry.message.length > room ? undefined : encoder.encode(entry.message).byteLength;
    if (this.entries.length >= this.#maxEntries || size === undefined || size > room) {
      this.dropped++;
      return;
    }
    this.bytes += size;
    this.entries.push(entry);
  }
}
