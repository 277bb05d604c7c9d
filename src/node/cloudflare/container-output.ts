/**
 * What comes back from a container, parsed as untrusted input: the job script's result line (see
 * job-script.ts) and, inside it, the harness's records, stdout and stderr. The bytes were produced next
 * to the job's code, so every size is checked here again, whatever the script claims to have capped.
 */
import { z } from "zod";
import {
  HarnessRecord as ChannelRecord,
  LOG_LEVELS,
  type CallOutcome,
  type ErrorInfo,
  type HarnessErrorRecord,
  type LogEntry,
  type LogLevel,
  type RecordBounds,
} from "../protocol";
import { boundedError, boundedOutput, LogBudget } from "../../untrusted-output";
import { RESULT_MARKER } from "./job-script";
/** The result line's JSON besides the three base64 payloads. */
const RESULT_OVERHEAD_CHARS = 4 * 1024;

const Stream = z.object({
  /** Everything the job wrote to the stream, including what was discarded past the cap. */
  bytes: z.number().int().min(0),
  /** The kept prefix. */
  base64: z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/),
});

const ContainerResult = z.strictObject({
  status: z.number().int().min(0).max(255),
  wallMs: z.number().int().min(0),
  cpuMs: z.number().int().min(0),
  /** The difference of /proc/vmstat's oom_kill counter across the job. */
  oomKills: z.number().int(),
  files: z.number().int().min(0),
  /** The limit the script's guard stopped the job for, if any. */
  stopped: z.enum(["", "processes", "files"]),
  records: Stream,
  stdout: Stream,
  stderr: Stream,
});

export interface StreamCaps {
  recordsBytes: number;
  streamBytes: number;
}

export interface DecodedStream {
  kept: Uint8Array;
  /** Bytes written in all; more than kept.length when the script discarded the rest. */
  total: number;
}

export interface ContainerOutcome {
  status: number;
  wallMs: number;
  cpuMs: number;
  oomKills: number;
  files: number;
  stopped: "" | "processes" | "files";
  records: DecodedStream;
  stdout: DecodedStream;
  stderr: DecodedStream;
}

/** The exec's stdout → the script's measurements, or why it is refused. */
export function parseContainerOutput(stdout: string, caps: StreamCaps): ContainerOutcome | { refused: string } {
  const maxChars =
    base64Chars(caps.recordsBytes) + 2 * base64Chars(caps.streamBytes) + RESULT_OVERHEAD_CHARS + RESULT_MARKER.length;
  if (stdout.length > maxChars)
    return { refused: `its output is ${stdout.length} characters; at most ${maxChars} fit` };
  const line = stdout
    .split("\n")
    .reverse()
    .find((candidate) => candidate.startsWith(RESULT_MARKER));
  if (line === undefined) return { refused: "it printed no result line" };
  let json: unknown;
  try {
    json = JSON.parse(line.slice(RESULT_MARKER.length));
  } catch {
    return { refused: "its result line is not JSON" };
  }
  const parsed = ContainerResult.safeParse(json);
  if (!parsed.success)
    return { refused: `its result line does not match the schema: ${z.prettifyError(parsed.error)}` };
  const result = parsed.data;
  const records = decode(result.records, caps.recordsBytes);
  const out = decode(result.stdout, caps.streamBytes);
  const err = decode(result.stderr, caps.streamBytes);
  if (!records || !out || !err) return { refused: "a stream is larger than its cap, or than its own byte count" };
  return { ...result, records, stdout: out, stderr: err };
}

function base64Chars(bytes: number): number {
  return Math.ceil(bytes / 3) * 4;
}

function decode(stream: z.infer<typeof Stream>, cap: number): DecodedStream | undefined {
  if (stream.base64.length > base64Chars(cap)) return undefined;
  let binary: string;
  try {
    binary = atob(stream.base64);
  } catch {
    return undefined;
  }
  if (binary.length > cap || binary.length > stream.bytes) return undefined;
  const kept = new Uint8Array(binary.length);
  for (let index = 0; index < binary.length; index++) kept[index] = binary.charCodeAt(index);
  return { kept, total: stream.bytes };
}

/** The kept bytes as text, with the local host's note when the rest was discarded. */
export function streamText(stream: DecodedStream): string {
  const text = new TextDecoder().decode(stream.kept);
  const dropped = stream.total - stream.kept.length;
  return dropped > 0 ? `${text}\n… [truncated: ${dropped} more bytes]` : text;
}

export interface JobRecords {
  calls: (CallOutcome | undefined)[];
  logs: LogEntry[];
  logBytes: number;
  logsDropped: number;
  /** Error codes (EFBIG, EMFILE, …) of errors the job let escape: evidence of which rlimit fired. */
  errorCodes: Set<string>;
  ready: boolean;
  done: { maxRssKb: number; cpuMs: number } | undefined;
}

/**
 * The harness's `<nonce> <json>` lines, with the local host's rules (host/node/channel.ts): a line
 * without the nonce, not JSON or not a known record is skipped; each call is taken once; logs and
 * outputs are bounded again here.
 */
export function parseRecords(bytes: Uint8Array, nonce: string, bounds: RecordBounds): JobRecords {
  const records: Omit<JobRecords, "logs" | "logBytes" | "logsDropped"> = {
    calls: Array.from({ length: bounds.inputs }, () => undefined),
    errorCodes: new Set(),
    ready: false,
    done: undefined,
  };
  const logs = new LogBudget<LogEntry>(bounds);
  let harnessDropped = 0;
  const prefix = `${nonce} `;
  const lines = new TextDecoder().decode(bytes).split("\n");
  // The last piece has no newline: a record cut off by a kill or by the cap, never a whole one.
  lines.pop();
  for (const line of lines) {
    if (!line.startsWith(prefix)) continue;
    let json: unknown;
    try {
      json = JSON.parse(line.slice(prefix.length));
    } catch {
      continue;
    }
    const parsed = ChannelRecord.safeParse(json);
    if (!parsed.success) continue;
    const record = parsed.data;
    switch (record.t) {
      case "ready":
        records.ready = true;
        break;
      case "log": {
        const level = LOG_LEVELS.find((known): known is LogLevel => known === record.level);
        if (level) logs.offer({ level, message: record.message, timestamp: record.timestamp });
        else logs.dropped++;
        break;
      }
      case "call":
        if (record.index < 0 || record.index >= records.calls.length || records.calls[record.index]) break;
        records.calls[record.index] = record.ok
          ? boundedOutput(record.outputJson, bounds.maxOutputBytes)
          : failure(record.error, records.errorCodes);
        break;
      case "uncaught":
        if (record.error.code) records.errorCodes.add(record.error.code);
        break;
      case "done":
        harnessDropped = record.logsDropped;
        records.done = { maxRssKb: record.maxRssKb, cpuMs: record.cpuMs };
        break;
    }
  }
  return { ...records, logs: logs.entries, logBytes: logs.bytes, logsDropped: harnessDropped + logs.dropped };
}

function failure(error: HarnessErrorRecord, codes: Set<string>): CallOutcome {
  if (error.code) codes.add(error.code);
  const { name, message, stack }: ErrorInfo = boundedError(error);
  return { ok: false, error: { name, message, stack } };
}
