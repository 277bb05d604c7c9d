/**
 * What comes out of a sandbox, parsed as untrusted input: the harness's record lines (fd 3) and the
 * raw stdout/stderr. Every buffer here is bounded by the host, whatever the harness claims to have
 * bounded already: the bytes were written next to the job's code.
 */
import { StringDecoder } from "node:string_decoder";
import { boundedError, boundedOutput, LogBudget, MAX_STACK_CHARS } from "../../src/untrusted-output.ts";
import {
  HarnessRecord as ChannelRecord,
  LOG_LEVELS,
  type CallOutcome,
  type ErrorInfo,
  type HarnessErrorRecord,
  type LogEntry,
  type LogLevel,
} from "./protocol.ts";

export interface ChannelBounds {
  inputs: number;
  maxLogEntries: number;
  maxLogBytes: number;
  maxOutputBytes: number;
}

/** What the records said, already bounded. */
export class JobRecords {
  readonly calls: (CallOutcome | undefined)[];
  readonly #logs: LogBudget<LogEntry>;
  /** Entries the harness said it dropped (the host's own refusals are counted by #logs). */
  #harnessDropped = 0;
  /** Error codes (EFBIG, EMFILE, …) of errors the job let escape: evidence of which rlimit fired. */
  readonly errorCodes = new Set<string>();
  ready = false;
  done: { maxRssKb: number; cpuMs: number } | undefined;

  readonly #nonce: string;
  readonly #bounds: ChannelBounds;
  readonly #budget: number;
  #received = 0;
  #pending = "";
  readonly #decoder = new StringDecoder("utf8");
  readonly #onRecord: (kind: ChannelRecord["t"]) => void;

  constructor(nonce: string, bounds: ChannelBounds, onRecord: (kind: ChannelRecord["t"]) => void) {
    this.#nonce = nonce;
    this.#bounds = bounds;
    this.calls = Array.from({ length: bounds.inputs }, () => undefined);
    this.#logs = new LogBudget(bounds);
    this.#onRecord = onRecord;
    // Enough for every output at its limit, every log entry, and framing; anything beyond is refused.
    this.#budget =
      bounds.inputs * (bounds.maxOutputBytes + MAX_STACK_CHARS * 4 + 1024) +
      2 * bounds.maxLogBytes +
      bounds.maxLogEntries * 512 +
      1024 * 1024;
  }

  get logs(): LogEntry[] {
    return this.#logs.entries;
  }

  get logBytes(): number {
    return this.#logs.bytes;
  }

  /** Entries the harness said it dropped plus any the host refused. */
  get logsDropped(): number {
    return this.#harnessDropped + this.#logs.dropped;
  }

  push(chunk: Buffer): void {
    if (this.#received >= this.#budget) return;
    this.#received += chunk.length;
    this.#pending += this.#decoder.write(chunk);
    let newline = this.#pending.indexOf("\n");
    while (newline !== -1) {
      const line = this.#pending.slice(0, newline);
      this.#pending = this.#pending.slice(newline + 1);
      this.#accept(line);
      newline = this.#pending.indexOf("\n");
    }
    if (this.#received >= this.#budget) this.#pending = "";
  }

  #accept(line: string): void {
    const prefix = `${this.#nonce} `;
    // A line without the nonce was not written by the harness (or was garbled by a job writing to fd 3).
    if (!line.startsWith(prefix)) return;
    let json: unknown;
    try {
      json = JSON.parse(line.slice(prefix.length));
    } catch {
      return;
    }
    const parsed = ChannelRecord.safeParse(json);
    if (!parsed.success) return;
    const record = parsed.data;
    switch (record.t) {
      case "ready":
        this.ready = true;
        break;
      case "log":
        this.#log(record.level, record.message, record.timestamp);
        break;
      case "call":
        if (record.index < 0 || record.index >= this.calls.length || this.calls[record.index]) return;
        this.calls[record.index] = record.ok
          ? boundedOutput(record.outputJson, this.#bounds.maxOutputBytes)
          : this.#failure(record.error);
        break;
      case "uncaught":
        if (record.error.code) this.errorCodes.add(record.error.code);
        break;
      case "done":
        this.#harnessDropped = record.logsDropped;
        this.done = { maxRssKb: record.maxRssKb, cpuMs: record.cpuMs };
        break;
    }
    this.#onRecord(record.t);
  }

  #log(level: string, message: string, timestamp: number): void {
    const known = LOG_LEVELS.find((l): l is LogLevel => l === level);
    if (known) this.#logs.offer({ level: known, message, timestamp });
    else this.#logs.dropped++;
  }

  #failure(error: HarnessErrorRecord): CallOutcome {
    if (error.code) this.errorCodes.add(error.code);
    const { name, message, stack }: ErrorInfo = boundedError(error);
    return { ok: false, error: { name, message, stack } };
  }
}

/** Keeps the first `maxBytes` of a stream and counts (then discards) the rest, so the writer never blocks. */
export class BoundedText {
  readonly #maxBytes: number;
  readonly #chunks: Buffer[] = [];
  #kept = 0;
  #total = 0;

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  push(chunk: Buffer): void {
    this.#total += chunk.length;
    const room = this.#maxBytes - this.#kept;
    if (room <= 0) return;
    const kept = chunk.length <= room ? chunk : chunk.subarray(0, room);
    this.#chunks.push(kept);
    this.#kept += kept.length;
  }

  get truncated(): boolean {
    return this.#total > this.#kept;
  }

  text(): string {
    const text = Buffer.concat(this.#chunks).toString("utf8");
    return this.truncated ? `${text}\n… [truncated: ${this.#total - this.#kept} more bytes]` : text;
  }
}
