/**
 * The host's reading of a sandbox's record channel (fd 3), fed bytes directly: records however the
 * writes split them, a line longer than any record, and the budget on everything the channel takes.
 */
import { describe, expect, it } from "vitest";
import { JobRecords } from "../node/channel.ts";

const NONCE = "n0nce";
const bounds = { inputs: 2, maxLogEntries: 100, maxLogBytes: 10_000, maxOutputBytes: 1_000 };

function records(): JobRecords {
  return new JobRecords(NONCE, bounds, () => undefined);
}

const line = (record: unknown) => `${NONCE} ${JSON.stringify(record)}\n`;
const log = (message: string) => line({ t: "log", level: "log", message, timestamp: 1 });

describe("the record channel", () => {
  it("reads records however the writes split them, multi-byte characters included", () => {
    const bytes = Buffer.from(log("héllo 🙂") + line({ t: "call", index: 0, ok: true, outputJson: '"ö"' }));
    const channel = records();
    for (let at = 0; at < bytes.length; at++) channel.push(bytes.subarray(at, at + 1));
    expect(channel.logs.map((entry) => entry.message)).toEqual(["héllo 🙂"]);
    expect(channel.calls[0]).toEqual({ ok: true, outputJson: '"ö"' });
  });

  it("drops a line longer than any record could be, and reads the records after it", () => {
    const channel = records();
    const endless = Buffer.alloc(64 * 1024, "a".charCodeAt(0));
    // Longer than the longest record (2 × maxOutputBytes and an error's fields), well within the budget.
    for (let i = 0; i < 4; i++) channel.push(endless);
    channel.push(Buffer.from(`\n${log("after")}`));
    expect(channel.logs.map((entry) => entry.message)).toEqual(["after"]);
  });

  it("keeps outputs of quotes at their limit for every case, though each doubles inside its record", () => {
    const large = { ...bounds, inputs: 50, maxOutputBytes: 1_000_000 };
    const channel = new JobRecords(NONCE, large, () => undefined);
    // 499 999 quotes: 1 MB of output JSON (each quote escaped), 2 MB once escaped again in the record.
    const outputJson = JSON.stringify('"'.repeat((large.maxOutputBytes - 2) / 2));
    for (let index = 0; index < large.inputs; index++) {
      channel.push(Buffer.from(line({ t: "call", index, ok: true, outputJson })));
    }
    expect(channel.calls.filter((call) => call?.ok)).toHaveLength(large.inputs);
  });

  it("refuses everything past its budget, so a job cannot make the host hold more", () => {
    const channel = records();
    const flood = Buffer.from(log("x".repeat(1000)).repeat(2000));
    channel.push(flood);
    channel.push(Buffer.from(line({ t: "call", index: 0, ok: true, outputJson: "1" })));
    expect(channel.calls[0]).toBeUndefined();
    expect(channel.logs.length).toBeLessThanOrEqual(bounds.maxLogEntries);
  });

  it("refuses an output that is not JSON, as a failed call", () => {
    const channel = records();
    channel.push(Buffer.from(line({ t: "call", index: 0, ok: true, outputJson: "{not json" })));
    expect(channel.calls[0]).toMatchObject({ ok: false, error: { message: "the reported output is not JSON" } });
  });
});
