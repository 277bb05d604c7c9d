/**
 * The container home's adapter (src/node/cloudflare) against a fake of the SDK's sandbox stub: it has the
 * SDK's method shapes, keeps what it is given and answers each exec with what the job script prints in a
 * container. The script's output is built here in its documented format; one of them is a real output,
 * recorded by running the script and the harness under bubblewrap in a root shaped like the image.
 * Nothing here runs a container or the script: the assertions are about what the adapter sends, and the
 * reply it builds from what comes back.
 */
import { describe, expect, it, vi } from "vitest";
import { NodeRunRequest, type NodeRunReply } from "../../src/node/protocol";
import {
  nodeSandboxOn,
  sandboxIdFor,
  sandboxStarterOn,
  type ContainerNodeSandboxOptions,
  type SandboxLike,
} from "../../src/node/cloudflare/container-sandbox";
import { CONTAINER_PATHS, RESULT_MARKER, jobCommand } from "../../src/node/cloudflare/job-script";

type ExecOptions = Parameters<SandboxLike["exec"]>[1];
type ExecResult = Awaited<ReturnType<SandboxLike["exec"]>>;
type Respond = (sandbox: FakeSandbox, command: string, options: ExecOptions) => ExecResult | Promise<ExecResult>;

/** The SDK's stub as far as the adapter uses it: it stores writes, replays the container, counts teardowns. */
class FakeSandbox implements SandboxLike {
  readonly files = new Map<string, string>();
  readonly log: string[] = [];
  readonly execs: { command: string; options: ExecOptions }[] = [];
  readonly #respond: Respond;

  constructor(respond: Respond) {
    this.#respond = respond;
  }

  async writeFile(path: string, content: string | ReadableStream<Uint8Array>, _options?: { encoding?: string }) {
    if (typeof content !== "string") throw new Error("the fake takes strings only");
    this.log.push(`write ${path}`);
    this.files.set(path, content);
    return { success: true, path, timestamp: new Date().toISOString() };
  }

  async exec(command: string, options?: ExecOptions): Promise<ExecResult> {
    this.log.push("exec");
    this.execs.push({ command, options });
    return this.#respond(this, command, options);
  }

  async destroy(): Promise<void> {
    this.log.push("destroy");
  }

  /** The nonce the adapter handed the harness, as the harness would read it. */
  get nonce(): string {
    const setup: unknown = JSON.parse(this.files.get(CONTAINER_PATHS.setupFile) ?? "{}");
    if (typeof setup !== "object" || setup === null || !("nonce" in setup) || typeof setup.nonce !== "string") {
      throw new Error("no setup was written");
    }
    return setup.nonce;
  }
}

function execResult(stdout: string, exitCode = 0, stderr = ""): ExecResult {
  return {
    success: exitCode === 0,
    exitCode,
    stdout,
    stderr,
    command: "bash -c …",
    duration: 1,
    timestamp: new Date().toISOString(),
  };
}

const bytesOf = (text: string) => new TextEncoder().encode(text);
const base64Of = (bytes: Uint8Array) => btoa(Array.from(bytes, (byte) => String.fromCharCode(byte)).join(""));

interface Printed {
  status?: number;
  wallMs?: number;
  cpuMs?: number;
  oomKills?: number;
  files?: number;
  stopped?: "" | "processes" | "files";
  records?: string;
  stdout?: string;
  stderr?: string;
  /** Bytes written in all, when more than the kept text (the script discarded the rest). */
  recordsTotal?: number;
  stdoutTotal?: number;
}

/** The job script's result line, in the format it prints. */
function printed(values: Printed): string {
  const stream = (text = "", total?: number) => {
    const bytes = bytesOf(text);
    return { bytes: total ?? bytes.length, base64: base64Of(bytes) };
  };
  const line = {
    status: values.status ?? 0,
    wallMs: values.wallMs ?? 40,
    cpuMs: values.cpuMs ?? 35,
    oomKills: values.oomKills ?? 0,
    files: values.files ?? 0,
    stopped: values.stopped ?? "",
    records: stream(values.records, values.recordsTotal),
    stdout: stream(values.stdout, values.stdoutTotal),
    stderr: stream(values.stderr),
  };
  return `${RESULT_MARKER}${JSON.stringify(line)}\n`;
}

type Record = { t: string } & { [key: string]: unknown };

/** What the harness writes to fd 3: an un-nonced `waiting` line, then `<nonce> <json>` records. */
function records(nonce: string, ...lines: Record[]): string {
  return "waiting\n" + lines.map((line) => `${nonce} ${JSON.stringify(line)}\n`).join("");
}

const ready = { t: "ready" };
const done = { t: "done", logsDropped: 0, maxRssKb: 49_152, cpuMs: 30 };
const returned = (index: number, outputJson: string) => ({ t: "call", index, ok: true, outputJson });

/** A fake whose exec prints `make(nonce)` (with the nonce the adapter wrote into the setup). */
function container(make: (nonce: string) => Printed, exitCode = 0): FakeSandbox {
  return new FakeSandbox((sandbox) => execResult(printed(make(sandbox.nonce)), exitCode));
}

function request(
  overrides: Omit<Partial<NodeRunRequest>, "limits"> & { limits?: Partial<NodeRunRequest["limits"]> } = {},
): NodeRunRequest {
  const { limits, ...rest } = overrides;
  return NodeRunRequest.parse({
    executionId: "exec_0123456789abcdef0123456789abcdef",
    code: "module.exports = async (context) => context.input * 2",
    inputs: [21],
    timeoutMs: 2_500,
    ...rest,
    limits: { ...limits },
  });
}

async function run(
  sandbox: FakeSandbox,
  job = request(),
  options: ContainerNodeSandboxOptions = {},
): Promise<{ reply: NodeRunReply; opened: string[] }> {
  const opened: string[] = [];
  const home = nodeSandboxOn((id) => {
    opened.push(id);
    return sandbox;
  }, options);
  return { reply: await home.run(job), opened };
}

function reportOf(reply: NodeRunReply) {
  if (!reply.ok) throw new Error(`expected a report, got ${reply.error.message}`);
  return reply.report;
}

function unavailableMessage(reply: NodeRunReply): string {
  if (reply.ok) throw new Error("expected SANDBOX_UNAVAILABLE, got a report");
  expect(reply.error.code).toBe("SANDBOX_UNAVAILABLE");
  return reply.error.message;
}

describe("the container home: what it sends", () => {
  it("writes the job and its setup, runs the constant command with the limits in its environment, then destroys the sandbox", async () => {
    const sandbox = container((nonce) => ({ records: records(nonce, ready, returned(0, "42"), done) }));
    const job = request({
      code: "module.exports = async (c) => c.input",
      inputs: [21, "x"],
      timeoutMs: 2_500,
      cpuTimeMs: 1_200,
      memoryMb: 256,
      captureConsole: false,
      maxLogEntries: 10,
      maxLogBytes: 2_048,
      maxOutputBytes: 4_096,
      limits: {
        maxFileSize: 1_000_000,
        maxFiles: 20,
        maxSubprocesses: 2,
        maxFileDescriptors: 64,
        writable: ["/tmp", "/data/out"],
      },
    });
    const { opened } = await run(sandbox, job, { isolateNetwork: false });

    expect(opened).toEqual(["node-exec_0123456789abcdef0123456789abcdef"]);
    expect(sandbox.log).toEqual([
      `write ${CONTAINER_PATHS.jobFile}`,
      `write ${CONTAINER_PATHS.setupFile}`,
      "exec",
      "destroy",
    ]);
    expect(sandbox.files.get(CONTAINER_PATHS.jobFile)).toBe(job.code);
    const setup: unknown = JSON.parse(sandbox.files.get(CONTAINER_PATHS.setupFile) ?? "");
    expect(setup).toEqual({
      nonce: expect.stringMatching(/^[0-9a-f]{32}$/),
      executionId: job.executionId,
      inputs: [21, "x"],
      captureConsole: false,
      maxLogEntries: 10,
      maxLogBytes: 2_048,
      maxOutputBytes: 4_096,
    });

    const [exec] = sandbox.execs;
    expect(exec?.command).toBe(jobCommand());
    expect(exec?.command).not.toContain(job.code);
    expect(exec?.options?.timeout).toBe(2_500 + 15_000);
    expect(exec?.options?.env).toMatchObject({
      CORDON_TIMEOUT: "2.500s",
      CORDON_CPU: "2",
      CORDON_HEAP_MB: "256",
      CORDON_FSIZE: "1000000",
      CORDON_NOFILE: "64",
      CORDON_NPROC: String(2 + 12 * 3),
      CORDON_MAX_PROCESSES: "3",
      CORDON_MAX_FILES: "20",
      CORDON_WRITABLE: "/tmp /data/out",
      CORDON_STREAM_CAP: "65536",
      CORDON_ISOLATE_NETWORK: "0",
      CORDON_HARNESS: "/opt/cordon/harness.mjs",
      CORDON_NODE: "/usr/local/bin/node",
      CORDON_JOB_FILE: CONTAINER_PATHS.jobFile,
    });
    // Every output at its limit escaped twice with an error's fields escaped, the logs' control
    // characters escaped, and framing (the local host's records budget).
    expect(Number(exec?.options?.env?.CORDON_RECORDS_CAP)).toBe(
      2 * (2 * 4_096 + 6 * (256 + 16 * 1024 * 2) + 1024) + 6 * 2_048 + 10 * 512 + 1024 * 1024,
    );
  });

  it("isolates the network by default, and caps what comes back at 16 MiB however large the budget", async () => {
    const sandbox = container((nonce) => ({ records: records(nonce, ready, returned(0, "1"), done) }));
    await run(sandbox, request({ inputs: Array.from({ length: 100 }, () => 1), maxOutputBytes: 1024 * 1024 }));
    expect(sandbox.execs[0]?.options?.env).toMatchObject({
      CORDON_ISOLATE_NETWORK: "1",
      CORDON_RECORDS_CAP: String(16 * 1024 * 1024),
      CORDON_CPU: "3", // cpuTimeMs defaults to the wall timeout, rounded up to whole seconds
    });
  });

  it("gives every execution its own sandbox id, valid for the SDK", async () => {
    const ids = await Promise.all(
      [
        "exec_0123456789abcdef0123456789abcdef",
        "exec_0123456789abcdef0123456789abcdee",
        "Exec-UPPER",
        "x".repeat(128),
      ].map(sandboxIdFor),
    );
    expect(new Set(ids).size).toBe(4);
    for (const id of ids) expect(id).toMatch(/^node-[a-z0-9_-]{1,58}[a-z0-9_]$/);
    expect(ids[2]).toMatch(/^node-h-[0-9a-f]{56}$/);
    expect(await sandboxIdFor("Exec-UPPER")).toBe(ids[2]);
  });
});

describe("the container home: the reply it builds", () => {
  it("builds the report from a real recorded output: calls, console logs, stdout, metrics", async () => {
    // Printed by the job script for `console.log('doubling', c.input); console.warn('careful');
    // process.stdout.write('raw'); return c.input * 2` with input 21, under bwrap as described above.
    const recordedNonce = "cbd8880f5586ef9c11639d031eec6203";
    const recorded =
      'CORDON-RESULT {"status":0,"wallMs":77,"cpuMs":58,"oomKills":0,"files":0,"stopped":"","records":{"bytes":444,"base64":"d2FpdGluZwpjYmQ4ODgwZjU1ODZlZjljMTE2MzlkMDMxZWVjNjIwMyB7InQiOiJyZWFkeSJ9CmNiZDg4ODBmNTU4NmVmOWMxMTYzOWQwMzFlZWM2MjAzIHsidCI6ImxvZyIsImxldmVsIjoibG9nIiwibWVzc2FnZSI6ImRvdWJsaW5nIDIxIiwidGltZXN0YW1wIjoxNzk1NDQwMjk2MDY3fQpjYmQ4ODgwZjU1ODZlZjljMTE2MzlkMDMxZWVjNjIwMyB7InQiOiJsb2ciLCJsZXZlbCI6Indhcm4iLCJtZXNzYWdlIjoiY2FyZWZ1bCIsInRpbWVzdGFtcCI6MTc5NTQ0MDI5NjA2N30KY2JkODg4MGY1NTg2ZWY5YzExNjM5ZDAzMWVlYzYyMDMgeyJ0IjoiY2FsbCIsImluZGV4IjowLCJvayI6dHJ1ZSwib3V0cHV0SnNvbiI6IjQyIn0KY2JkODg4MGY1NTg2ZWY5YzExNjM5ZDAzMWVlYzYyMDMgeyJ0IjoiZG9uZSIsImxvZ3NEcm9wcGVkIjowLCJtYXhSc3NLYiI6NDk1ODQsImNwdU1zIjo0OX0K"},"stdout":{"bytes":3,"base64":"cmF3"},"stderr":{"bytes":0,"base64":""}}\n';
    const sandbox = new FakeSandbox((fake) => {
      // The nonce is the one the adapter chose for this run; everything else is as recorded.
      const line = JSON.parse(recorded.slice(RESULT_MARKER.length)) as { records: { base64: string } };
      const text = new TextDecoder().decode(Uint8Array.from(atob(line.records.base64), (c) => c.charCodeAt(0)));
      line.records.base64 = base64Of(bytesOf(text.replaceAll(recordedNonce, fake.nonce)));
      return execResult(`${RESULT_MARKER}${JSON.stringify(line)}\n`);
    });
    const report = reportOf((await run(sandbox)).reply);
    expect(report.calls).toEqual([{ ok: true, outputJson: "42" }]);
    expect(report.logs).toEqual([
      { level: "log", message: "doubling 21", timestamp: 1795440296067 },
      { level: "warn", message: "careful", timestamp: 1795440296067 },
    ]);
    expect(report).toMatchObject({ logBytes: 18, logsDropped: 0, stdout: "raw", stderr: "", limitHit: null });
    expect(report.metrics).toEqual({ runMs: 77, cpuTimeMs: 58, peakMemoryMb: 48.4, filesWritten: 0, coldStart: true });
  });

  it("reports a thrown error as that call's failure, with no limit hit", async () => {
    const thrown = { name: "RangeError", message: "nope", stack: "RangeError: nope\n    at job.js:1" };
    const sandbox = container((nonce) => ({
      records: records(nonce, ready, { t: "call", index: 0, ok: false, error: thrown }, returned(1, "2"), done),
    }));
    const report = reportOf((await run(sandbox, request({ inputs: [1, 2] }))).reply);
    expect(report.calls).toEqual([
      { ok: false, error: thrown },
      { ok: true, outputJson: "2" },
    ]);
    expect(report.limitHit).toBeNull();
  });

  it("keeps only records carrying this run's nonce, each call once, and bounds logs and outputs again", async () => {
    const forged = "f".repeat(32);
    const sandbox = container((nonce) => ({
      records:
        records(
          nonce,
          ready,
          { t: "log", level: "info", message: "one", timestamp: 1 },
          { t: "log", level: "shout", message: "unknown level", timestamp: 2 },
          { t: "log", level: "error", message: "two", timestamp: 3 },
          { t: "log", level: "debug", message: "three: over maxLogEntries", timestamp: 4 },
          returned(0, JSON.stringify("x".repeat(200))),
          returned(0, "1"),
          { t: "call", index: 7, ok: true, outputJson: "1" },
          { t: "call", index: 1, ok: "yes" },
          { t: "done", logsDropped: 5, maxRssKb: 1024, cpuMs: 1 },
        ) +
        `${forged} ${JSON.stringify(returned(1, '"forged"'))}\n` +
        `${nonce} {not json\n` +
        `${nonce} ${JSON.stringify(returned(1, '"cut off by a kill"'))}`,
    }));
    const report = reportOf(
      (await run(sandbox, request({ inputs: [1, 2], maxLogEntries: 2, maxOutputBytes: 100 }))).reply,
    );
    expect(report.logs.map((log) => log.message)).toEqual(["one", "two"]);
    expect(report.logsDropped).toBe(5 + 2);
    expect(report.calls[0]).toMatchObject({ ok: false, error: { name: "CordonOutputTooLarge" } });
    expect(report.calls[1]).toMatchObject({ ok: false, error: { name: "SandboxExited" } });
  });

  it("reports a wall-clock kill as SANDBOX_TIMEOUT and keeps the calls that finished", async () => {
    const sandbox = container((nonce) => ({
      status: 137,
      wallMs: 2_504,
      cpuMs: 2_400,
      records: records(nonce, ready, returned(0, "0")),
    }));
    const report = reportOf((await run(sandbox, request({ inputs: [0, 1, 2], cpuTimeMs: 10_000 }))).reply);
    expect(report.limitHit).toEqual({
      code: "SANDBOX_TIMEOUT",
      limit: "timeoutMs",
      message: "the job ran past its timeout of 2500 ms and was killed",
    });
    expect(report.calls[0]).toEqual({ ok: true, outputJson: "0" });
    expect(report.calls[1]).toMatchObject({ ok: false, error: { name: "SANDBOX_TIMEOUT" } });
    expect(report.calls[2]).toMatchObject({ ok: false, error: { name: "SANDBOX_TIMEOUT" } });
    expect(report.metrics).toMatchObject({ runMs: 2_504, cpuTimeMs: 2_400, peakMemoryMb: 0 });
  });

  it("reports a heap exhausted (V8's abort) and an OOM kill (the kernel's counter) as SANDBOX_MEMORY_LIMIT", async () => {
    const heap = container((nonce) => ({
      status: 134,
      records: records(nonce, ready),
      stderr:
        "<--- Last few GCs --->\nFATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory\n",
    }));
    const killed = container((nonce) => ({ status: 137, wallMs: 300, oomKills: 1, records: records(nonce, ready) }));
    for (const sandbox of [heap, killed]) {
      const report = reportOf((await run(sandbox, request({ memoryMb: 64 }))).reply);
      expect(report.limitHit).toEqual({
        code: "SANDBOX_MEMORY_LIMIT",
        limit: "memoryMb",
        message: "the job used more than its 64 MB of memory and was killed",
      });
      expect(report.calls[0]).toMatchObject({ ok: false, error: { name: "SANDBOX_MEMORY_LIMIT" } });
    }
  });

  it("names each limit from its trace: the guard's stop, the file count, SIGXCPU, SIGXFSZ and escaped errnos", async () => {
    const escaped = (code: string) => ({
      t: "call",
      index: 0,
      ok: false,
      error: { name: "Error", message: `${code}: refused`, stack: "", code },
    });
    const cases: [Printed | ((nonce: string) => Printed), string, string][] = [
      [{ status: 137, wallMs: 120, stopped: "processes" }, "SANDBOX_SECURITY_VIOLATION", "limits.maxSubprocesses"],
      [{ status: 137, wallMs: 120, stopped: "files", files: 51 }, "SANDBOX_SECURITY_VIOLATION", "limits.maxFiles"],
      [
        (nonce) => ({ files: 51, records: records(nonce, ready, returned(0, "1"), done) }),
        "SANDBOX_SECURITY_VIOLATION",
        "limits.maxFiles",
      ],
      [{ status: 128 + 24, wallMs: 1_010, cpuMs: 1_005 }, "SANDBOX_TIMEOUT", "cpuTimeMs"],
      [{ status: 128 + 25 }, "SANDBOX_SECURITY_VIOLATION", "limits.maxFileSize"],
      [
        (nonce) => ({ records: records(nonce, ready, escaped("EFBIG"), done) }),
        "SANDBOX_SECURITY_VIOLATION",
        "limits.maxFileSize",
      ],
      [
        (nonce) => ({ records: records(nonce, ready, escaped("EMFILE"), done) }),
        "SANDBOX_SECURITY_VIOLATION",
        "limits.maxFileDescriptors",
      ],
      [
        (nonce) => ({ records: records(nonce, ready, escaped("EAGAIN"), done) }),
        "SANDBOX_SECURITY_VIOLATION",
        "limits.maxSubprocesses",
      ],
      [
        (nonce) => ({ records: records(nonce, ready, escaped("ENOSPC"), done) }),
        "SANDBOX_MEMORY_LIMIT",
        "limits.writable",
      ],
    ];
    for (const [values, code, limit] of cases) {
      const sandbox = container((nonce) => ({
        records: records(nonce, ready),
        ...(typeof values === "function" ? values(nonce) : values),
      }));
      const report = reportOf((await run(sandbox, request({ cpuTimeMs: 1_000, limits: { maxFiles: 50 } }))).reply);
      expect(report.limitHit, `${code} ${limit}`).toMatchObject({ code, limit });
    }
  });

  it("reports a process that ended on its own as SandboxExited, with stdout cut like the local host's", async () => {
    const sandbox = container((nonce) => ({
      status: 3,
      records: records(nonce, ready),
      stdout: "x".repeat(10),
      stdoutTotal: 70_000,
    }));
    const report = reportOf((await run(sandbox)).reply);
    expect(report.limitHit).toBeNull();
    expect(report.calls[0]).toEqual({
      ok: false,
      error: {
        name: "SandboxExited",
        message: "call 0 did not finish: the job's process ended (exit status 3)",
        stack: "",
      },
    });
    expect(report.stdout).toBe(`${"x".repeat(10)}\n… [truncated: 69990 more bytes]`);
  });

  it("says so when Node ended the job for awaiting what nothing can settle (exit status 13)", async () => {
    const sandbox = container((nonce) => ({ status: 13, records: records(nonce, ready) }));
    const report = reportOf((await run(sandbox)).reply);
    expect(report.calls[0]).toMatchObject({
      ok: false,
      error: {
        name: "SandboxExited",
        message: expect.stringContaining("a promise that nothing could settle") as unknown,
      },
    });
  });

  it("says which calls were lost when the records passed what the home brings back", async () => {
    const sandbox = container((nonce) => ({
      records: records(nonce, ready, returned(0, "1")),
      recordsTotal: 20_000_000,
    }));
    const report = reportOf((await run(sandbox, request({ inputs: [1, 2] }))).reply);
    expect(report.calls[1]).toMatchObject({ ok: false, error: { name: "CordonOutputTooLarge" } });
  });
});

describe("the container home: refusals", () => {
  it("refuses malformed container output, and still destroys the sandbox", async () => {
    const outputs: ((nonce: string) => string)[] = [
      () => "",
      () => "some noise\n",
      () => `${RESULT_MARKER}{"status":0,\n`,
      () => `${RESULT_MARKER}${JSON.stringify({ status: -1 })}\n`,
      (nonce) => printed({ records: records(nonce, ready, done) }).replace('"stopped":""', '"stopped":"","extra":1'),
      (nonce) => printed({ records: records(nonce, ready, done) }).replace('"stopped":""', '"stopped":"memory"'),
      // A stream longer than its cap, or than its own byte count.
      () => printed({ stdout: "y".repeat(65_537) }),
      () => printed({ stdout: "yyyy" }).replace('"bytes":4', '"bytes":2'),
      () => printed({ stdout: "yyyy" }).replace(base64Of(bytesOf("yyyy")), "not base64!"),
      () => `${RESULT_MARKER}${"z".repeat(5_000_000)}\n`,
    ];
    for (const output of outputs) {
      const sandbox = new FakeSandbox((fake) => execResult(output(fake.nonce)));
      const message = unavailableMessage((await run(sandbox)).reply);
      expect(message).toMatch(/the container's reply was refused/);
      expect(sandbox.log.at(-1)).toBe("destroy");
    }
  });

  it("answers SANDBOX_UNAVAILABLE when the harness never started, or the script could not set up", async () => {
    const silent = container(() => ({ status: 1, records: "waiting\n", stderr: "node: bad option\n" }));
    expect(unavailableMessage((await run(silent)).reply)).toMatch(/did not start \(exit status 1\): node: bad option/);

    const setupFailed = new FakeSandbox(() =>
      execResult("", 125, "cordon: cannot make /etc writable: it already exists in the container\n"),
    );
    expect(unavailableMessage((await run(setupFailed, request({ limits: { writable: ["/etc"] } }))).reply)).toMatch(
      /could not run the job: cordon: cannot make \/etc writable/,
    );
    expect(setupFailed.log.at(-1)).toBe("destroy");
  });

  it("answers SANDBOX_UNAVAILABLE when the SDK fails, and destroys the sandbox", async () => {
    const failingExec = new FakeSandbox(() => {
      throw new Error("Container crashed");
    });
    expect(unavailableMessage((await run(failingExec)).reply)).toMatch(/could not run the job: Container crashed/);
    expect(failingExec.log).toEqual([
      `write ${CONTAINER_PATHS.jobFile}`,
      `write ${CONTAINER_PATHS.setupFile}`,
      "exec",
      "destroy",
    ]);

    const failingWrite = new FakeSandbox(() => execResult(""));
    failingWrite.writeFile = async (path: string) => ({ success: false, path, timestamp: "" });
    expect(unavailableMessage((await run(failingWrite)).reply)).toMatch(/could not write the job/);
    expect(failingWrite.log).toEqual(["destroy"]);
  });

  it("reports an exec that outlived its own bound as SANDBOX_TIMEOUT", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    try {
      const stuck = new FakeSandbox(() => {
        vi.setSystemTime(Date.now() + 2_500 + 15_000);
        throw new Error("Command timed out");
      });
      const report = reportOf((await run(stuck, request({ inputs: [1, 2] }))).reply);
      expect(report.limitHit).toMatchObject({ code: "SANDBOX_TIMEOUT", limit: "timeoutMs" });
      expect(report.calls.every((call) => !call.ok && call.error.name === "SANDBOX_TIMEOUT")).toBe(true);
      expect(stuck.log.at(-1)).toBe("destroy");
    } finally {
      vi.useRealTimers();
    }
  });

  it("refuses packages and invalid requests without opening a sandbox", async () => {
    const sandbox = container(() => ({}));
    const withPackages = await run(sandbox, request({ packages: ["lodash@4.17.21"] }));
    expect(withPackages.reply).toMatchObject({
      ok: false,
      error: { code: "SANDBOX_UNAVAILABLE", installError: { reason: "unavailable" } },
    });
    const invalid = await run(sandbox, { ...request(), timeoutMs: 0 });
    expect(unavailableMessage(invalid.reply)).toMatch(/not valid/);
    expect([...withPackages.opened, ...invalid.opened]).toEqual([]);
    expect(sandbox.log).toEqual([]);
  });
});

describe("the container home: teardown", () => {
  it("destroys the execution's sandbox on cancel, and never throws", async () => {
    const opened: string[] = [];
    const sandbox = container(() => ({}));
    const home = nodeSandboxOn((id) => {
      opened.push(id);
      return sandbox;
    });
    await home.cancel("exec_0123456789abcdef0123456789abcdef");
    expect(opened).toEqual(["node-exec_0123456789abcdef0123456789abcdef"]);
    expect(sandbox.log).toEqual(["destroy"]);

    sandbox.destroy = async () => {
      throw new Error("already gone");
    };
    await expect(home.cancel("exec_0123456789abcdef0123456789abcdef")).resolves.toBeUndefined();
    await expect(
      nodeSandboxOn(() => {
        throw new Error("no namespace");
      }).cancel("exec_x"),
    ).resolves.toBeUndefined();
  });

  it("hands the teardown to waitUntil when given one, instead of making the reply wait for it", async () => {
    const sandbox = container((nonce) => ({ records: records(nonce, ready, returned(0, "42"), done) }));
    let release: () => void = () => undefined;
    sandbox.destroy = () =>
      new Promise<void>((resolve) => {
        sandbox.log.push("destroy");
        release = resolve;
      });
    const pending: Promise<unknown>[] = [];
    const { reply } = await run(sandbox, request(), { waitUntil: (promise) => pending.push(promise) });
    expect(reportOf(reply).calls).toEqual([{ ok: true, outputJson: "42" }]);
    expect(pending).toHaveLength(1);
    release();
    await Promise.all(pending);
    expect(sandbox.log.at(-1)).toBe("destroy");
  });
});

describe("the container home with the cordon's warm pool", () => {
  /** The pool as the home sees it over RPC: hands out `leaseOf(executionId)` and records what it is told. */
  function fakePool(warm: boolean) {
    const calls: string[] = [];
    const leases = new Map<string, string>();
    const stub = {
      async take(cordon: string, executionId: string) {
        calls.push(`take ${cordon} ${executionId}`);
        leases.set(executionId, `pool-sandbox-for-${executionId}`);
        return { sandboxId: `pool-sandbox-for-${executionId}`, warm };
      },
      async sandboxOf(_cordon: string, executionId: string) {
        return leases.get(executionId);
      },
      async finished(cordon: string, executionId: string) {
        calls.push(`finished ${cordon} ${executionId}`);
      },
    };
    return { calls, pool: { cordon: "medium" as const, stub } };
  }

  it.each([true, false])(
    "runs in the sandbox the pool leased (warm: %s), says so in coldStart, and ends the lease after the teardown",
    async (warm) => {
      const sandbox = container((nonce) => ({ records: records(nonce, ready, returned(0, "42"), done) }));
      const { calls, pool } = fakePool(warm);
      const job = request();
      const { reply, opened } = await run(sandbox, job, { pool });
      expect(opened).toEqual([`pool-sandbox-for-${job.executionId}`]);
      expect(reportOf(reply).metrics.coldStart).toBe(!warm);
      expect(sandbox.log.at(-1)).toBe("destroy");
      expect(calls).toEqual([`take medium ${job.executionId}`, `finished medium ${job.executionId}`]);
    },
  );

  it("cancels the job's pooled sandbox, found through the pool", async () => {
    const { calls, pool } = fakePool(true);
    const sandbox = new FakeSandbox(() => execResult(""));
    const opened: string[] = [];
    const home = nodeSandboxOn(
      (id) => {
        opened.push(id);
        return sandbox;
      },
      { pool },
    );
    await pool.stub.take("medium", "exec_cancelled");
    await home.cancel("exec_cancelled");
    expect(opened).toEqual(["pool-sandbox-for-exec_cancelled"]);
    expect(sandbox.log).toEqual(["destroy"]);
    expect(calls).toContain("finished medium exec_cancelled");
  });
});

describe("the pool's container starter", () => {
  it("calls a sandbox warm once its container has run a first command, and destroys it on request", async () => {
    const sandbox = new FakeSandbox(() => execResult(""));
    const opened: string[] = [];
    const starter = sandboxStarterOn((id) => {
      opened.push(id);
      return sandbox;
    });
    await starter.warm("pool-1");
    expect(sandbox.execs).toEqual([{ command: "true", options: { timeout: expect.any(Number) } }]);
    await starter.destroy("pool-1");
    expect(opened).toEqual(["pool-1", "pool-1"]);
    expect(sandbox.log).toEqual(["exec", "destroy"]);
  });

  it("does not call a container warm when its first command fails", async () => {
    const starter = sandboxStarterOn(() => new FakeSandbox(() => execResult("", 1)));
    await expect(starter.warm("pool-2")).rejects.toThrow(/exited with 1/);
  });
});
