/**
 * What comes out of a sandbox, parsed as untrusted input: the harness's record lines (fd 3) and the
 * raw stdout/stderr. Every buffer here is bounded by the host, whatever the harness claims to have
 * bounded already: the bytes were written next to the job's code.
 */
import { boundedError, boundedOutput, LogBudget } from "../../src/untrusted-output.ts";
import {
  HarnessRecord as ChannelRecord,
  LOG_LEVELS,
  type CallOutcome,
  type ErrorInfo,
  type HarnessErrorRecord,
  type LogEntry,
  type LogLevel,
  maxRecordLineBytes,
  recordsBudget,
  type RecordBounds,
} from "./protocol.ts";

const NEWLINE = 0x0a;

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
  readonly #bounds: RecordBounds;
  readonly #budget: number;
  readonly #maxLineBytes: number;
  #received = 0;
  /** The line being received, in the chunks it came in (joined once, at its newline). */
  #line: Buffer[] = [];
  #lineBytes = 0;
  /** The line being received is longer than any record can be: dropped up to its newline. */
  #overlong = false;
  readonly #onRecord: (kind: ChannelRecord["t"]) => void;

  constructor(nonce: string, bounds: RecordBounds, onRecord: (kind: ChannelRecord["t"]) => void) {
    this.#nonce = nonce;
    this.#bounds = bounds;
    this.calls = Array.from({ length: bounds.inputs }, () => undefined);
    this.#logs = new LogBudget(bounds);
    this.#onRecord = onRecord;
    this.#maxLineBytes = maxRecordLineBytes(bounds);
    this.#budget = recordsBudget(bounds);
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

  /**
   * Takes the next bytes from fd 3. Each byte is looked at once (a job writing one endless line
   * must not make the host rescan it), and a line is kept only up to the longest a record can be.
   */
  push(chunk: Buffer): void {
    if (this.#received >= this.#budget) return;
    const room = this.#budget - this.#received;
    const bytes = chunk.length > room ? chunk.subarray(0, room) : chunk;
    this.#received += bytes.length;
    let start = 0;
    for (let newline = bytes.indexOf(NEWLINE); newline !== -1; newline = bytes.indexOf(NEWLINE, start)) {
      this.#collect(bytes.subarray(start, newline));
      // A newline byte never occurs inside a multi-byte UTF-8 sequence: a line decodes on its own.
      if (!this.#overlong) this.#accept(Buffer.concat(this.#line, this.#lineBytes).toString("utf8"));
      this.#line = [];
      this.#lineBytes = 0;
      this.#overlong = false;
      start = newline + 1;
    }
    this.#collect(bytes.subarray(start));
  }

  #collect(part: Buffer): void {
    if (this.#overlong || part.length === 0) return;
    if (this.#lineBytes + part.length > this.#maxLineBytes) {
      this.#overlong = true;
      this.#line = [];
      this.#lineBytes = 0;
      return;
    }
    this.#line.push(part);
    this.#lineBytes += part.length;
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
