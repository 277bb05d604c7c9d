/**
 * `node` jobs in bubblewrap sandboxes, against the real kernel: every limit here is expected to be
 * enforced by a namespace, a cgroup or an rlimit, and reported as the right `limitHit`, whether the job
 * started its sandbox (cold) or was handed a warm one that had been started with looser limits.
 *
 * Most tests drive a NodeRunner directly (starting the whole host also starts the edge runner pool);
 * the route itself, with its auth and validation, is tested once through startHost. The package tests
 * install from the npm registry.
 */
import { createServer, type Server } from "node:net";
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHost, type RunningHost } from "../main.ts";
import { inheritableDescriptors } from "../node/descriptors.ts";
import { cannedRoutes } from "../node/egress-routes.ts";
import { NodeRunner } from "../node/node-runner.ts";
import { warmSetting } from "../node/route.ts";
import { NodeRunReplySchema, NodeRunRequest, type NodeRunReply, type NodeRunReport } from "../node/protocol.ts";
import type { z } from "zod";

type RequestInput = z.input<typeof NodeRunRequest>;
type Mode = "cold" | "warm";

const runner = new NodeRunner({ warmPerCordon: 0 });
const warmRunner = new NodeRunner({ warmPerCordon: 1 });
/** Every runner a test makes, closed (warm sandboxes destroyed) before the leftover checks. */
const runners: NodeRunner[] = [runner, warmRunner];

function request(code: string, overrides: Partial<RequestInput> = {}): NodeRunRequest {
  return NodeRunRequest.parse({
    executionId: `test-${randomBytes(4).toString("hex")}`,
    code,
    inputs: [null],
    timeoutMs: 10_000,
    ...overrides,
  });
}

/** The reply, checked against the schema the dispatcher parses it with. */
async function reply(on: NodeRunner, job: NodeRunRequest): Promise<NodeRunReply> {
  const answer = await on.run(job);
  expect(NodeRunReplySchema.safeParse(answer).success).toBe(true);
  return answer;
}

function report(answer: NodeRunReply): NodeRunReport {
  if (!answer.ok) throw new Error(`the sandbox did not run: ${answer.error.code}: ${answer.error.message}`);
  return answer.report;
}

/**
 * A warm sandbox for this job's shape, started with looser rlimits and pids.max than the job's, so
 * the job's own limits must be set at hand-off for any limit test to pass.
 */
async function prewarmLoosely(on: NodeRunner, job: NodeRunRequest): Promise<void> {
  const loose = NodeRunRequest.parse({
    ...job,
    cpuTimeMs: 120_000,
    limits: { ...job.limits, maxFileDescriptors: 4096, maxFileSize: 256 * 1024 * 1024, maxSubprocesses: 16 },
  });
  expect(await on.prewarm(loose)).toBe(true);
}

async function runIn(mode: Mode, code: string, overrides: Partial<RequestInput> = {}): Promise<NodeRunReport> {
  const job = request(code, overrides);
  if (mode === "warm") await prewarmLoosely(warmRunner, job);
  const result = report(await reply(mode === "warm" ? warmRunner : runner, job));
  expect(result.metrics.coldStart).toBe(mode === "cold");
  return result;
}

const run = (code: string, overrides: Partial<RequestInput> = {}) => runIn("cold", code, overrides);

function output(report: NodeRunReport, index = 0): unknown {
  const call = report.calls[index];
  if (!call?.ok) throw new Error(`call ${index} failed: ${JSON.stringify(call)}; stderr: ${report.stderr}`);
  return JSON.parse(call.outputJson);
}

/** Host processes whose command line contains `marker` (the test's own process excluded). */
function hostProcesses(marker: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, "utf8").includes(marker)) found.push(Number(entry));
    } catch {
      // exited while we looked
    }
  }
  return found;
}

/** Polls until `check` holds (a pool refills in the background); fails the test past `timeoutMs`. */
async function eventually(check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error("timed out waiting for a condition");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const PIDS_GROUPS = "/sys/fs/cgroup/pids/cordon-node";
const jobGroups = () =>
  existsSync(PIDS_GROUPS) ? readdirSync(PIDS_GROUPS).filter((name) => name.startsWith("job-")) : [];
let groupsBefore: string[] = [];
let harnessesBefore: number[] = [];

beforeAll(() => {
  // A clear failure beats twenty confusing ones.
  if (!runner.status.available) throw new Error(`node sandbox unavailable: ${runner.status.problem}`);
  groupsBefore = jobGroups();
  harnessesBefore = hostProcesses("/opt/cordon/harness.mjs");
});

afterAll(async () => {
  await Promise.all(runners.map((each) => each.close()));
  // Only this suite's sandboxes count: other hosts on the machine (a dev server) may run their own.
  expect(hostProcesses("/opt/cordon/harness.mjs").filter((pid) => !harnessesBefore.includes(pid))).toEqual([]);
  // Every job's cgroup is removed once its report is built.
  expect(jobGroups().filter((name) => !groupsBefore.includes(name))).toEqual([]);
});

describe("node jobs: code forms and results", () => {
  it("runs a CommonJS export once per input, round-tripping JSON", async () => {
    const report = await run(
      "module.exports = async function (context) { return { doubled: context.input.n * 2, context } }",
      {
        inputs: [{ n: 1 }, { n: 21 }],
      },
    );
    expect(report.calls).toHaveLength(2);
    expect(output(report, 0)).toMatchObject({ doubled: 2, context: { input: { n: 1 }, index: 0 } });
    expect(output(report, 1)).toMatchObject({ doubled: 42, context: { input: { n: 21 }, index: 1 } });
    expect(report.limitHit).toBeNull();
    expect(report.metrics.runMs).toBeGreaterThan(0);
    expect(report.metrics.cpuTimeMs).toBeGreaterThan(0);
    expect(report.metrics.peakMemoryMb).toBeGreaterThan(0);
  });

  it("carries large inputs and outputs both ways", async () => {
    const report = await run("module.exports = async (c) => c.input.toUpperCase() + c.input.length", {
      inputs: ["x".repeat(3_000_000)],
      maxOutputBytes: 4_000_000,
    });
    expect(output(report)).toBe("X".repeat(3_000_000) + "3000000");
  });

  it("runs an ESM default export, with imports of builtins", async () => {
    const report = await run(
      'import { createHash } from "node:crypto";\nexport default async function (context) { return createHash("sha256").update(context.input).digest("hex").slice(0, 8) }',
      { inputs: ["abc"] },
    );
    expect(output(report)).toBe("ba7816bf");
  });

  it("reports a thrown error, a missing export and an oversized output per call", async () => {
    const thrown = await run(
      "module.exports = async (c) => { if (c.input) throw new RangeError('bad ' + c.input); return 1 }",
      {
        inputs: [0, "x"],
      },
    );
    expect(output(thrown, 0)).toBe(1);
    expect(thrown.calls[1]).toMatchObject({ ok: false, error: { name: "RangeError", message: "bad x" } });
    expect(thrown.calls[1]?.ok === false && thrown.calls[1].error.stack).toContain("/workspace/job.js");

    const notFunction = await run("module.exports = 42");
    expect(notFunction.calls[0]).toMatchObject({ ok: false, error: { name: "TypeError" } });

    const big = await run("module.exports = async () => 'x'.repeat(1000)", { maxOutputBytes: 100 });
    expect(big.calls[0]).toMatchObject({ ok: false, error: { name: "CordonOutputTooLarge" } });
  });
});

describe("node jobs: console and output streams", () => {
  it("captures console levels on its own channel, apart from stdout and stderr", async () => {
    const report = await run(
      `const fs = require("node:fs");
       module.exports = async () => {
         console.log("a log", { n: 1 }); console.info("an info"); console.warn("a warning");
         console.error("an error"); console.debug("a debug");
         process.stdout.write("raw stdout\\n"); process.stderr.write("raw stderr\\n");
         // A forged record: the job does not know the nonce, so the host drops it.
         try { fs.writeSync(3, 'x {"t":"log","level":"error","message":"forged","timestamp":0}\\n') } catch {}
         return "done";
       }`,
    );
    expect(report.logs.map(({ level, message }) => [level, message])).toEqual([
      ["log", "a log { n: 1 }"],
      ["info", "an info"],
      ["warn", "a warning"],
      ["error", "an error"],
      ["debug", "a debug"],
    ]);
    expect(report.logs.every((entry) => typeof entry.timestamp === "number")).toBe(true);
    expect(report.stdout).toBe("raw stdout\n");
    expect(report.stderr).toBe("raw stderr\n");
    expect(report.logBytes).toBe(report.logs.reduce((sum, entry) => sum + Buffer.byteLength(entry.message), 0));
  });

  it("keeps its records out of the job's reach: no patch sees the nonce or rewrites a record", async () => {
    const report = await run(
      `const fs = require("node:fs");
       module.exports = async () => {
         const seen = [];
         // Every way a record passes through code the job can patch, before the harness writes it.
         const from = Buffer.from;
         Buffer.from = function (...args) { if (typeof args[0] === "string") seen.push(args[0]); return from.apply(this, args) };
         const write = fs.writeSync;
         fs.writeSync = function (...args) { seen.push(String(args[1])); return write.apply(this, args) };
         require("node:module").syncBuiltinESMExports();
         Object.defineProperty(Object.prototype, "toJSON", { configurable: true,
           value() { return this.t === "call" ? { ...this, outputJson: "666" } : this } });
         console.log("a log");
         // The inspector would reach what the harness keeps from the job (the nonce, process.execve).
         const refused = (open) => { try { open(); return "opened" } catch (error) { return error.code } };
         const inspector = [
           refused(() => new (require("node:inspector").Session)().connect()),
           refused(() => process.binding("inspector")),
         ];
         return { leaked: seen.some((text) => text.includes('"t":')), execve: typeof process.execve, inspector };
       }`,
    );
    expect(output(report)).toEqual({
      leaked: false,
      execve: "undefined",
      inspector: ["ERR_ACCESS_DENIED", "ERR_ACCESS_DENIED"],
    });
    expect(report.logs.map((entry) => entry.message)).toEqual(["a log"]);
  });

  it("bounds the log and leaves console alone when capture is off", async () => {
    const bounded = await run(
      "module.exports = async () => { for (let i = 0; i < 50; i++) console.log('line ' + i) }",
      {
        maxLogEntries: 10,
      },
    );
    expect(bounded.logs).toHaveLength(10);
    expect(bounded.logsDropped).toBe(40);

    const uncaptured = await run("module.exports = async () => { console.log('to stdout') }", {
      captureConsole: false,
    });
    expect(uncaptured.logs).toEqual([]);
    expect(uncaptured.stdout).toBe("to stdout\n");
  });
});

describe.each(["cold", "warm"] as const)("node jobs: limits enforced by the kernel (%s start)", (mode) => {
  const run = (code: string, overrides: Partial<RequestInput> = {}) => runIn(mode, code, overrides);

  it("stops a fork bomb at maxSubprocesses and leaves no process behind", async () => {
    const marker = `cordon-fork-bomb-${randomBytes(4).toString("hex")}`;
    const bomb = `/* ${marker} */ const cp = require("child_process"); const me = process.argv[1];
      setInterval(() => { try { cp.spawn(process.execPath, ["-e", me, me], { stdio: "ignore" }) } catch {} }, 1);`;
    const report = await run(
      `const cp = require("child_process");
       module.exports = async () => {
         const bomb = ${JSON.stringify(bomb)};
         cp.spawn(process.execPath, ["-e", bomb, bomb], { stdio: "ignore" });
         await new Promise((resolve) => setTimeout(resolve, 20000));
       }`,
      { limits: { maxSubprocesses: 4 }, timeoutMs: 15_000 },
    );
    expect(report.limitHit).toMatchObject({ code: "SANDBOX_SECURITY_VIOLATION", limit: "limits.maxSubprocesses" });
    expect(report.metrics.runMs).toBeLessThan(10_000);
    expect(hostProcesses(marker)).toEqual([]);
  });

  it("allows subprocesses up to maxSubprocesses", async () => {
    const report = await run(
      `const { execFileSync } = require("child_process");
       module.exports = async () => execFileSync(process.execPath, ["-e", "process.stdout.write('from child')"]).toString()`,
      { limits: { maxSubprocesses: 1 } },
    );
    expect(output(report)).toBe("from child");
    expect(report.limitHit).toBeNull();
  });

  it("refuses descriptors beyond maxFileDescriptors (RLIMIT_NOFILE)", async () => {
    const report = await run(
      `const fs = require("fs");
       module.exports = async () => { const fds = []; for (;;) fds.push(fs.openSync("/dev/null", "r")) }`,
      { limits: { maxFileDescriptors: 64 } },
    );
    expect(report.calls[0]).toMatchObject({ ok: false, error: { message: expect.stringContaining("EMFILE") } });
    expect(report.limitHit).toMatchObject({ code: "SANDBOX_SECURITY_VIOLATION", limit: "limits.maxFileDescriptors" });
  });

  it("refuses a file larger than maxFileSize (RLIMIT_FSIZE)", async () => {
    const report = await run(
      `const fs = require("fs");
       module.exports = async (c) => { fs.writeFileSync("/tmp/file", Buffer.alloc(c.input)); return fs.statSync("/tmp/file").size }`,
      { inputs: [500_000, 2_000_000], limits: { maxFileSize: 1_000_000 } },
    );
    expect(output(report, 0)).toBe(500_000);
    expect(report.calls[1]).toMatchObject({ ok: false, error: { message: expect.stringContaining("EFBIG") } });
    expect(report.limitHit).toMatchObject({ code: "SANDBOX_SECURITY_VIOLATION", limit: "limits.maxFileSize" });
  });

  it("counts files in the writable paths and stops a job past maxFiles", async () => {
    const create = `const fs = require("fs");
       module.exports = async (c) => { for (let i = 0; i < c.input; i++) fs.writeFileSync("/tmp/f" + i, "x"); return c.input }`;
    const within = await run(create, { inputs: [50], limits: { maxFiles: 100 } });
    expect(within.limitHit).toBeNull();
    expect(within.metrics.filesWritten).toBe(50);

    const past = await run(create, { inputs: [5000], limits: { maxFiles: 100 } });
    expect(past.limitHit).toMatchObject({ code: "SANDBOX_SECURITY_VIOLATION", limit: "limits.maxFiles" });
  });

  it("makes everything but the writable paths read-only, and /etc absent", async () => {
    const report = await run(
      `const fs = require("fs");
       module.exports = async () => {
         const attempt = (path) => { try { fs.writeFileSync(path, "x"); return "written" } catch (e) { return e.code } };
         const result = {};
         for (const path of ["/tmp/ok", "/workspace/out/ok", "/workspace/../etc/passwd", "/etc/x", "/usr/x", "/usr/lib/x",
                             "/workspace/job.js", "/x", "/opt/node/bin/node", "/proc/sys/kernel/hostname",
                             "/dev/x", "/dev/shm/x"]) {
           result[path] = attempt(path);
         }
         return result;
       }`,
      { limits: { writable: ["/tmp", "/workspace/out"] } },
    );
    const result = output(report) as Record<string, string>;
    expect(result["/tmp/ok"]).toBe("written");
    expect(result["/workspace/out/ok"]).toBe("written");
    for (const [path, code] of Object.entries(result)) {
      if (!path.endsWith("/ok")) expect([path, code]).toEqual([path, expect.stringMatching(/^(EROFS|ENOENT|EACCES)$/)]);
    }

    const escaped = await run("module.exports = async () => require('fs').writeFileSync('/usr/evil', 'x')");
    expect(escaped.limitHit).toMatchObject({ code: "SANDBOX_SECURITY_VIOLATION", limit: "limits.writable" });
  });

  it("bounds /tmp: filling it ends in ENOSPC", async () => {
    const report = await run(
      `const fs = require("fs"); const chunk = Buffer.alloc(1 << 20, 1);
       module.exports = async () => { for (let i = 0; ; i++) fs.writeFileSync("/tmp/fill" + i, chunk) }`,
      { memoryMb: 256 },
    );
    expect(report.calls[0]).toMatchObject({ ok: false, error: { message: expect.stringContaining("ENOSPC") } });
    expect(report.limitHit).toMatchObject({ code: "SANDBOX_MEMORY_LIMIT", limit: "limits.writable" });
  });

  it("kills a memory bomb at memoryMb (memory cgroup)", async () => {
    const report = await run(
      "module.exports = async () => { const keep = []; for (;;) keep.push(Buffer.alloc(1 << 20, 1)) }",
      { memoryMb: 64 },
    );
    expect(report.limitHit).toMatchObject({ code: "SANDBOX_MEMORY_LIMIT", limit: "memoryMb" });
    expect(report.calls[0]).toMatchObject({ ok: false, error: { name: "SANDBOX_MEMORY_LIMIT" } });
  });

  it("kills a JavaScript heap bomb at memoryMb", async () => {
    const report = await run(
      "module.exports = async () => { const keep = []; for (let i = 0; ; i++) keep.push({ i, s: 'x' + i }) }",
      { memoryMb: 64 },
    );
    expect(report.limitHit).toMatchObject({ code: "SANDBOX_MEMORY_LIMIT", limit: "memoryMb" });
  });

  it("says so when the job awaits a promise nothing can settle (Node ends it at once)", async () => {
    const report = await run("module.exports = () => new Promise(() => {})", { timeoutMs: 5_000 });
    expect(report.calls[0]).toMatchObject({
      ok: false,
      error: {
        name: "SandboxExited",
        message: expect.stringContaining("a promise that nothing could settle") as unknown,
      },
    });
  });

  it("kills an infinite loop at timeoutMs and keeps what came before", async () => {
    const started = performance.now();
    const report = await run(
      "module.exports = async (c) => { console.log('call', c.input); if (c.input === 1) for (;;); return c.input }",
      { inputs: [0, 1, 2], timeoutMs: 1_500, cpuTimeMs: 60_000 },
    );
    expect(performance.now() - started).toBeLessThan(1_500 + 2_000);
    expect(report.limitHit).toMatchObject({ code: "SANDBOX_TIMEOUT", limit: "timeoutMs" });
    expect(output(report, 0)).toBe(0);
    expect(report.calls[1]).toMatchObject({ ok: false, error: { name: "SANDBOX_TIMEOUT" } });
    expect(report.calls[2]).toMatchObject({ ok: false });
    expect(report.logs.map((entry) => entry.message)).toEqual(["call 0", "call 1"]);
  });

  it("kills a job past cpuTimeMs", async () => {
    const report = await run("module.exports = async () => { for (;;); }", { timeoutMs: 10_000, cpuTimeMs: 700 });
    expect(report.limitHit).toMatchObject({ code: "SANDBOX_TIMEOUT", limit: "cpuTimeMs" });
    expect(report.metrics.runMs).toBeLessThan(5_000);
  });

  it("takes a background process down with the job", async () => {
    const marker = `cordon-background-${randomBytes(4).toString("hex")}`;
    const report = await run(
      `const cp = require("child_process");
       module.exports = async () => {
         const child = cp.spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)", "${marker}"], { detached: true, stdio: "ignore" });
         child.unref();
         return child.pid;
       }`,
      { limits: { maxSubprocesses: 1 } },
    );
    expect(typeof output(report)).toBe("number");
    expect(hostProcesses(marker)).toEqual([]);
  });
});

describe("node jobs: isolation", () => {
  it("sees no host secrets, no /etc/shadow and only its own processes", async () => {
    const secret = `cordon-secret-${randomBytes(8).toString("hex")}`;
    process.env.CORDON_TEST_SECRET = secret;
    try {
      const report = await run(`const fs = require("fs");
        const read = (path) => { try { return fs.readFileSync(path, "utf8") } catch (e) { return e.code } };
        module.exports = async () => {
          const pids = fs.readdirSync("/proc").filter((name) => /^\\d+$/.test(name));
          return {
            env: process.env, shadow: read("/etc/shadow"), pids, uid: process.getuid(),
            environs: pids.map((pid) => read("/proc/" + pid + "/environ")),
            init: read("/proc/1/cmdline").split("\\0"),
          };
        }`);
      const result = output(report) as {
        env: Record<string, string>;
        shadow: string;
        pids: string[];
        uid: number;
        environs: string[];
        init: string[];
      };
      expect(JSON.stringify(result)).not.toContain(secret);
      // Only the sandbox's own: the proxy variables name the loopback port the harness forwards to the egress proxy.
      expect(Object.keys(result.env).sort()).toEqual([
        "HOME",
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "LANG",
        "PATH",
        "PWD",
        "TZ",
        "UV_THREADPOOL_SIZE",
        "http_proxy",
        "https_proxy",
      ]);
      expect(result.env.HTTP_PROXY).toBe("http://127.0.0.1:3128");
      expect(result.shadow).toBe("ENOENT");
      expect(result.uid).toBe(65534);
      // pid 1 is the sandbox's own init (bwrap, options passed by fd, so no host paths), then the job.
      expect(result.pids).toEqual(["1", "2"]);
      expect(result.init[0]).toMatch(/bwrap$/);
      expect(result.init.join(" ")).not.toMatch(/\/work|\/home|\/root|cordon-node-/);
    } finally {
      delete process.env.CORDON_TEST_SECRET;
    }
  });

  it("inherits none of the host's own descriptors", async () => {
    const inherited = inheritableDescriptors(7);
    const report = await run(
      `const fs = require("fs");
       module.exports = async (c) => c.input.map((fd) => { try { return fs.readlinkSync("/proc/self/fd/" + fd) } catch (e) { return e.code } })`,
      { inputs: [inherited] },
    );
    // Whatever the test runner itself inherited without O_CLOEXEC is /dev/null (or closed) in the job.
    for (const target of output(report) as string[]) expect(target).toMatch(/^(\/dev\/null|ENOENT)$/);
  });

  describe("network", () => {
    let server: Server;
    let port = 0;
    let connections = 0;

    beforeAll(async () => {
      server = createServer((socket) => {
        connections++;
        socket.destroy();
      });
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      const address = server.address();
      port = typeof address === "object" && address ? address.port : 0;
    });

    afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

    it("has only a private loopback: the host's ports and the internet are unreachable", async () => {
      const report = await run(
        `const net = require("net"); const os = require("os");
         const connect = (host, port) => new Promise((resolve) => {
           const socket = net.connect({ host, port });
           socket.on("connect", () => { socket.destroy(); resolve("connected") });
           socket.on("error", (e) => resolve(e.code));
           setTimeout(() => { socket.destroy(); resolve("timeout") }, 2000);
         });
         module.exports = async (c) => ({
           interfaces: Object.keys(os.networkInterfaces()),
           hostPort: await connect("127.0.0.1", c.input),
           internet: await connect("1.1.1.1", 443),
         })`,
        { inputs: [port] },
      );
      expect(output(report)).toEqual({ interfaces: ["lo"], hostPort: "ECONNREFUSED", internet: "ENETUNREACH" });
      expect(connections).toBe(0);
    });
  });
});

describe.each(["cold", "warm"] as const)("node jobs' egress: the proxy is the only way out (%s start)", (mode) => {
  let canned: Awaited<ReturnType<typeof cannedRoutes>>;
  let egressRunner: NodeRunner;
  const network = { allowedDomains: ["api.example.com"], blockedDomains: [], maxRequests: 10, maxBytes: 10_000 };

  beforeAll(async () => {
    canned = await cannedRoutes(fileURLToPath(new URL("../../test/egress/upstream/index.js", import.meta.url)));
    egressRunner = new NodeRunner({ egress: canned, warmPerCordon: mode === "warm" ? 1 : 0 });
    runners.push(egressRunner);
  });

  afterAll(() => canned.close());

  const runWithNetwork = async (code: string) => {
    const job = request(code, { network });
    if (mode === "warm") await prewarmLoosely(egressRunner, job);
    return report(await reply(egressRunner, job));
  };

  it("lets Node's own fetch and http reach an allowed host through the proxy", async () => {
    const result = await runWithNetwork(
      `const read = (res, resolve) => {
         let body = ""; res.on("data", (c) => (body += c)); res.on("end", () => resolve(body));
       };
       module.exports = async () => {
         // First use through a named export of node:http, as an ES module imports it.
         const { get } = await import("node:http");
         const viaNamedImport = await new Promise((resolve, reject) => {
           get("http://api.example.com/hello", (res) => read(res, resolve)).on("error", reject);
         });
         const viaFetch = await (await fetch("http://api.example.com/hello")).text();
         const viaHttp = await new Promise((resolve, reject) => {
           require("http").get("http://api.example.com/hello", (res) => read(res, resolve)).on("error", reject);
         });
         return { viaFetch, viaHttp, viaNamedImport };
       }`,
    );
    expect(output(result)).toEqual({
      viaFetch: "hello from api.example.com",
      viaHttp: "hello from api.example.com",
      viaNamedImport: "hello from api.example.com",
    });
    expect(result.egress).toMatchObject({ requests: 3, refusedCount: 0 });
  });

  it("meets the same checks when it ignores the proxy settings or talks to the socket itself", async () => {
    const result = await runWithNetwork(
      `const net = require("net");
       const attempt = (options, text) => new Promise((resolve) => {
         const socket = net.connect(options);
         let answer = "";
         socket.on("connect", () => socket.write(text));
         socket.on("data", (chunk) => (answer += chunk));
         socket.on("end", () => resolve(answer.split("\\r\\n")[0]));
         socket.on("error", (error) => resolve(error.code));
       });
       module.exports = async () => ({
         direct: await attempt({ host: "93.184.215.14", port: 80 }, "GET / HTTP/1.1\\r\\n\\r\\n"),
         socket: await attempt({ path: "/workspace/egress.sock" },
           "GET http://evil.example.net/ HTTP/1.1\\r\\nhost: evil.example.net\\r\\nconnection: close\\r\\n\\r\\n"),
       })`,
    );
    expect(output(result)).toEqual({ direct: "ENETUNREACH", socket: "HTTP/1.1 403 Forbidden" });
    expect(result.egress?.refusals).toEqual([
      expect.objectContaining({ rule: "not_allowlisted", host: "evil.example.net" }),
    ]);
  });
});

describe.each(["cold", "warm"] as const)("node jobs without cgroups (the rlimit fallbacks, %s start)", (mode) => {
  const fallback = new NodeRunner({ cgroups: false, warmPerCordon: mode === "warm" ? 1 : 0 });
  runners.push(fallback);
  const runWithout = async (code: string, overrides: Partial<RequestInput> = {}) => {
    const job = request(code, overrides);
    if (mode === "warm") await prewarmLoosely(fallback, job);
    const result = report(await reply(fallback, job));
    expect(result.metrics.coldStart).toBe(mode === "cold");
    return result;
  };

  it("still runs a job", async () => {
    const report = await runWithout("module.exports = async (c) => c.input + 1", { inputs: [1] });
    expect(output(report)).toBe(2);
  });

  it("stops a memory bomb with RLIMIT_AS and the V8 heap limit", async () => {
    const report = await runWithout(
      "module.exports = async () => { const keep = []; for (;;) keep.push(Buffer.alloc(1 << 20, 1)) }",
      { memoryMb: 64 },
    );
    expect(report.limitHit).toMatchObject({ code: "SANDBOX_MEMORY_LIMIT", limit: "memoryMb" });
  });

  it("bounds the writable paths together at half of memoryMb (RLIMIT_AS does not count tmpfs pages)", async () => {
    const paths = ["/tmp", "/workspace/a", "/workspace/b", "/workspace/c"];
    const report = await runWithout(
      `const fs = require("fs"); const chunk = Buffer.alloc(1 << 20, 1);
       module.exports = async () => {
         let total = 0;
         for (const dir of ${JSON.stringify(paths)}) {
           try { for (let i = 0; ; i++) { fs.writeFileSync(dir + "/fill" + i, chunk); total += chunk.length } } catch {}
         }
         return total;
       }`,
      { memoryMb: 64, limits: { writable: paths } },
    );
    const written = output(report) as number;
    expect(written).toBeGreaterThan(16 * 1024 * 1024);
    expect(written).toBeLessThanOrEqual(32 * 1024 * 1024);
  });

  it("stops a fork bomb by counting the sandbox's process tree", async () => {
    const bomb = `const cp = require("child_process"); const me = process.argv[1];
      setInterval(() => { try { cp.spawn(process.execPath, ["-e", me, me], { stdio: "ignore" }) } catch {} }, 1);`;
    const report = await runWithout(
      `const cp = require("child_process");
       module.exports = async () => {
         const bomb = ${JSON.stringify(bomb)};
         cp.spawn(process.execPath, ["-e", bomb, bomb], { stdio: "ignore" });
         await new Promise((resolve) => setTimeout(resolve, 20000));
       }`,
      { limits: { maxSubprocesses: 4 }, timeoutMs: 15_000 },
    );
    expect(report.limitHit).toMatchObject({ code: "SANDBOX_SECURITY_VIOLATION", limit: "limits.maxSubprocesses" });
  });

  it("stops a CPU hog with RLIMIT_CPU (whole seconds)", async () => {
    const report = await runWithout("module.exports = async () => { for (;;); }", { cpuTimeMs: 700 });
    expect(report.limitHit).toMatchObject({ code: "SANDBOX_TIMEOUT", limit: "cpuTimeMs" });
  });
});

describe("node jobs: the warm pool", () => {
  const echo = "module.exports = async (c) => c.input";
  const pooled = (options: ConstructorParameters<typeof NodeRunner>[0] = {}) => {
    const made = new NodeRunner({ warmPerCordon: 1, ...options });
    runners.push(made);
    return made;
  };

  it("hands a job a warm sandbox, then refills the pool after the reply", async () => {
    const pool = pooled();
    const job = request(echo, { inputs: [7] });
    expect(await pool.prewarm(job)).toBe(true);
    expect(pool.status.warm?.cordons.high).toEqual({ ready: 1, starting: 0 });

    const first = report(await reply(pool, job));
    expect(first.metrics.coldStart).toBe(false);
    expect(output(first)).toBe(7);
    await eventually(() => pool.status.warm?.cordons.high.ready === 1);

    const second = report(await reply(pool, request(echo, { inputs: [8] })));
    expect(second.metrics.coldStart).toBe(false);
    expect(output(second)).toBe(8);
    expect(pool.status.warm).toMatchObject({ hits: 2, misses: 0 });
  });

  it("never hands a sandbox to a second job", async () => {
    const pool = pooled();
    const code = `const fs = require("fs");
      module.exports = async (c) => {
        const before = { global: globalThis.cordonLeak ?? null, file: fs.existsSync("/tmp/leak") };
        globalThis.cordonLeak = c.input;
        fs.writeFileSync("/tmp/leak", String(c.input));
        return before;
      }`;
    expect(await pool.prewarm(request(code))).toBe(true);
    for (const input of [1, 2, 3]) {
      await eventually(() => pool.status.warm?.cordons.high.ready === 1);
      const result = report(await reply(pool, request(code, { inputs: [input] })));
      expect(result.metrics.coldStart).toBe(false);
      // Nothing of the job before: neither its globals nor its files.
      expect(output(result)).toEqual({ global: null, file: false });
    }
    await eventually(() => pool.status.warm?.cordons.high.ready === 1);
    const warm = pool.status.warm;
    if (!warm) throw new Error("no pool");
    // Every sandbox ever started served one job, was discarded, or still waits: none served two.
    const waiting = Object.values(warm.cordons).reduce((sum, each) => sum + each.ready + each.starting, 0);
    expect(warm.hits).toBe(3);
    expect(warm.started).toBe(warm.hits + warm.discarded + waiting);
  });

  it("falls back to cold starts under a burst instead of waiting for refills", async () => {
    const pool = pooled();
    expect(await pool.prewarm(request(echo))).toBe(true);
    const burst = await Promise.all([1, 2, 3, 4].map((input) => reply(pool, request(echo, { inputs: [input] }))));
    const starts = burst.map((each) => report(each).metrics.coldStart);
    expect(starts.filter((cold) => cold === false)).toHaveLength(1);
    expect(starts.filter((cold) => cold === true)).toHaveLength(3);
    expect(burst.map((each) => output(report(each)))).toEqual([1, 2, 3, 4]);
  });

  it("keeps cordons apart, and a cordon follows the shape of its latest job", async () => {
    const pool = pooled();
    expect(await pool.prewarm(request(echo))).toBe(true);
    const untrusted = report(await reply(pool, request(echo, { cordon: "untrusted", tenantId: "t-1" })));
    expect(untrusted.metrics.coldStart).toBe(true);
    expect(pool.status.warm?.cordons.high).toEqual({ ready: 1, starting: 0 });

    // Another shape (memoryMb is fixed when a sandbox starts) cannot use the waiting sandbox.
    const bigger = report(await reply(pool, request(echo, { memoryMb: 256 })));
    expect(bigger.metrics.coldStart).toBe(true);
    await eventually(() => pool.status.warm?.cordons.high.ready === 1);
    const again = report(await reply(pool, request(echo, { memoryMb: 256 })));
    expect(again.metrics.coldStart).toBe(false);
  });

  it("starts cold when a job needs more than its warm sandbox has, and refills with that much", async () => {
    const pool = pooled();
    const code = `const fs = require("fs");
      module.exports = async (c) => { const fds = []; for (let i = 0; i < c.input; i++) fds.push(fs.openSync("/dev/null", "r")); return fds.length }`;
    expect(await pool.prewarm(request(code, { limits: { maxFileDescriptors: 64 } }))).toBe(true);
    // A hand-off may lower an rlimit, never raise one: this job gets a fresh sandbox.
    const more = report(await reply(pool, request(code, { inputs: [500], limits: { maxFileDescriptors: 1024 } })));
    expect(more.metrics.coldStart).toBe(true);
    expect(output(more)).toBe(500);
    await eventually(() => pool.status.warm?.cordons.high.ready === 1);
    // The refill started with 1024 descriptors; a job allowed fewer gets them lowered at hand-off.
    const fewer = report(await reply(pool, request(code, { inputs: [500], limits: { maxFileDescriptors: 64 } })));
    expect(fewer.metrics.coldStart).toBe(false);
    expect(fewer.calls[0]).toMatchObject({ ok: false, error: { message: expect.stringContaining("EMFILE") } });
    await eventually(() => pool.status.warm?.cordons.high.ready === 1);
    const again = report(await reply(pool, request(code, { inputs: [500], limits: { maxFileDescriptors: 1024 } })));
    expect(again.metrics.coldStart).toBe(false);
    expect(output(again)).toBe(500);
  });

  it("starts every job cold when the pool is disabled", async () => {
    const pool = pooled({ warmPerCordon: 0 });
    expect(await pool.prewarm(request(echo))).toBe(false);
    for (const input of [1, 2]) {
      const result = report(await reply(pool, request(echo, { inputs: [input] })));
      expect(result.metrics.coldStart).toBe(true);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(pool.status.warm).toMatchObject({ perCordon: { high: 0, medium: 0, low: 0 }, hits: 0, started: 0 });
  });

  it("sizes each cordon apart: a cordon sized 0 starts cold while another stays warm", async () => {
    const pool = pooled({ warmPerCordon: { medium: 0 } });
    expect(pool.status.warm?.perCordon).toEqual({ high: 1, medium: 0, low: 1, untrusted: 1 });
    expect(await pool.prewarm(request(echo, { cordon: "medium" }))).toBe(false);
    const high = request(echo, { inputs: [1] });
    expect(await pool.prewarm(high)).toBe(true);
    expect(report(await reply(pool, high)).metrics.coldStart).toBe(false);
    const medium = report(await reply(pool, request(echo, { inputs: [2], cordon: "medium" })));
    expect(medium.metrics.coldStart).toBe(true);
    expect(pool.status.warm?.cordons.medium).toEqual({ ready: 0, starting: 0 });
  });

  it("reads CORDON_NODE_WARM as one size or as sizes per cordon", () => {
    expect(warmSetting("3")).toBe(3);
    expect(warmSetting("high=2, medium=0")).toEqual({ high: 2, medium: 0 });
    expect(warmSetting("high=two")).toBeUndefined();
    expect(warmSetting(undefined)).toBeUndefined();
  });
});

describe("node jobs: npm packages", () => {
  const INSTALL_TIMEOUT_MS = 120_000;
  const cacheRoot = mkdtempSync(join(tmpdir(), "cordon-packages-test-"));
  // npm and the jobs run as the sandbox uid: they must be able to traverse to the cache (mkdtemp is 0700).
  chmodSync(cacheRoot, 0o711);
  const withPackages = new NodeRunner({ warmPerCordon: 1, packageCacheRoot: join(cacheRoot, "main") });
  runners.push(withPackages);

  afterAll(() => rmSync(cacheRoot, { recursive: true, force: true }));

  it("refuses anything but name@exact-version in the schema", () => {
    const base = { executionId: "x", code: "1", inputs: [1], timeoutMs: 1000 };
    const valid = (packages: unknown, limits?: unknown) =>
      NodeRunRequest.safeParse({ ...base, packages, ...(limits ? { limits } : {}) }).success;
    for (const spec of ["lodash@4.17.21", "@types/node@20.1.0", "left-pad@1.3.0-beta.1", "JSONStream@1.3.5"]) {
      expect([spec, valid([spec])]).toEqual([spec, true]);
    }
    for (const spec of [
      "lodash",
      "lodash@^4.17.21",
      "lodash@~4.17.0",
      "lodash@4.x",
      "lodash@latest",
      "lodash@4.17.21 || 5",
      "lodash@1.0.0+build.1",
      "lodash@01.2.3",
      "https://registry.npmjs.org/lodash/-/lodash-4.17.21.tgz",
      "git+https://github.com/lodash/lodash.git",
      "github:lodash/lodash",
      "file:../lodash",
      "lodash@file:../lodash",
      "lodash@npm:other@1.0.0",
      "../lodash@1.0.0",
      ".hidden@1.0.0",
      "@scope@1.0.0",
      "a/b@1.0.0",
    ]) {
      expect([spec, valid([spec])]).toEqual([spec, false]);
    }
    expect(valid(["lodash@4.17.21", "lodash@4.17.20"])).toBe(false);
    expect(valid(Array.from({ length: 21 }, (_, i) => `p${i}@1.0.0`))).toBe(false);
    expect(valid(["lodash@4.17.21"], { writable: ["/workspace/node_modules"] })).toBe(false);
  });

  it(
    "installs a set once: require and import both work, and the next job's set is a cache hit",
    async () => {
      const before = withPackages.status.packages?.installs ?? 0;
      const first = report(
        await reply(
          withPackages,
          request("const _ = require('lodash'); module.exports = async () => _.chunk([1, 2, 3, 4], 2)", {
            packages: ["lodash@4.17.21"],
          }),
        ),
      );
      expect(output(first)).toEqual([
        [1, 2],
        [3, 4],
      ]);
      expect(first.metrics).toMatchObject({ packageCache: "miss", installMs: expect.any(Number) });

      const second = report(
        await reply(
          withPackages,
          request("import _ from 'lodash';\nexport default async () => _.VERSION", { packages: ["lodash@4.17.21"] }),
        ),
      );
      expect(output(second)).toBe("4.17.21");
      expect(second.metrics.packageCache).toBe("hit");
      expect(withPackages.status.packages?.installs).toBe(before + 1);
    },
    INSTALL_TIMEOUT_MS,
  );

  it(
    "shares one install between concurrent jobs that want the same set",
    async () => {
      const before = withPackages.status.packages?.installs ?? 0;
      const code = "const isNumber = require('is-number'); module.exports = async (c) => isNumber(c.input)";
      const replies = await Promise.all(
        ["5", "x"].map((input) =>
          reply(withPackages, request(code, { inputs: [input], packages: ["is-number@7.0.0"] })),
        ),
      );
      expect(replies.map((each) => output(report(each)))).toEqual([true, false]);
      expect(replies.map((each) => report(each).metrics.packageCache).sort()).toEqual(["miss", "shared"]);
      expect(withPackages.status.packages?.installs).toBe(before + 1);
    },
    INSTALL_TIMEOUT_MS,
  );

  it(
    "keeps each tenant's package sets apart unless the host shares them",
    async () => {
      const code = "const isOdd = require('is-odd'); module.exports = async () => isOdd(3)";
      const outcomeFor = async (on: NodeRunner, tenantId: string) =>
        report(await reply(on, request(code, { packages: ["is-odd@3.0.1"], tenantId }))).metrics.packageCache;
      expect(await outcomeFor(withPackages, "tenant-a")).toBe("miss");
      // Another tenant's first use is an install of its own: no hit tells it what tenant-a uses.
      expect(await outcomeFor(withPackages, "tenant-b")).toBe("miss");
      expect(await outcomeFor(withPackages, "tenant-a")).toBe("hit");

      const sharing = new NodeRunner({
        warmPerCordon: 0,
        packageCacheRoot: join(cacheRoot, "shared"),
        sharePackagesAcrossTenants: true,
      });
      runners.push(sharing);
      expect(await outcomeFor(sharing, "tenant-a")).toBe("miss");
      expect(await outcomeFor(sharing, "tenant-b")).toBe("hit");
    },
    INSTALL_TIMEOUT_MS,
  );

  it(
    "does not run install scripts",
    async () => {
      // esbuild's postinstall replaces its JavaScript launcher bin/esbuild with the native binary.
      const result = report(
        await reply(
          withPackages,
          request(
            `const fs = require("fs");
             module.exports = async () => ({
               postinstall: JSON.parse(fs.readFileSync("/workspace/node_modules/esbuild/package.json", "utf8")).scripts?.postinstall ?? null,
               launcher: fs.readFileSync("/workspace/node_modules/esbuild/bin/esbuild").subarray(0, 2).toString("latin1"),
             })`,
            { packages: ["esbuild@0.28.2"] },
          ),
        ),
      );
      expect(output(result)).toEqual({ postinstall: "node install.js", launcher: "#!" });
    },
    INSTALL_TIMEOUT_MS,
  );

  it(
    "mounts node_modules read-only: the job cannot change it",
    async () => {
      const code = `const fs = require("fs");
        const dir = "/workspace/node_modules";
        // Node's recursive rmSync reports EROFS with an empty code, hence the message.
        const attempt = (action) => { try { action(); return "done" } catch (e) { return e.code || e.message } };
        module.exports = async () => ({
          overwrite: attempt(() => fs.writeFileSync(dir + "/lodash/lodash.js", "module.exports = 'evil'")),
          append: attempt(() => fs.appendFileSync(dir + "/lodash/package.json", "x")),
          create: attempt(() => fs.writeFileSync(dir + "/evil.js", "x")),
          mkdir: attempt(() => fs.mkdirSync(dir + "/evil")),
          unlink: attempt(() => fs.unlinkSync(dir + "/lodash/package.json")),
          rename: attempt(() => fs.renameSync(dir + "/lodash", dir + "/moved")),
          chmod: attempt(() => fs.chmodSync(dir + "/lodash/lodash.js", 0o777)),
          symlink: attempt(() => fs.symlinkSync("/tmp", dir + "/link")),
          rmdir: attempt(() => fs.rmSync(dir + "/lodash", { recursive: true })),
          version: require("lodash").VERSION,
        })`;
      const result = report(await reply(withPackages, request(code, { packages: ["lodash@4.17.21"] })));
      const outcome = output(result) as Record<string, string>;
      expect(outcome.version).toBe("4.17.21");
      for (const [action, code] of Object.entries(outcome)) {
        if (action === "version") continue;
        expect([action, code]).toEqual([action, expect.stringMatching(/^(EROFS|EACCES|EPERM)$|Read-only file system/)]);
      }
      const after = report(
        await reply(
          withPackages,
          request("module.exports = async () => typeof require('lodash').chunk", { packages: ["lodash@4.17.21"] }),
        ),
      );
      expect(output(after)).toBe("function");
    },
    INSTALL_TIMEOUT_MS,
  );

  it(
    "hands a warm sandbox that carries the job's packages",
    async () => {
      const job = request("module.exports = async () => require('lodash').VERSION", { packages: ["lodash@4.17.21"] });
      expect(await withPackages.prewarm(job)).toBe(true);
      const result = report(await reply(withPackages, job));
      expect(result.metrics).toMatchObject({ coldStart: false, packageCache: "hit" });
      expect(output(result)).toBe("4.17.21");
    },
    INSTALL_TIMEOUT_MS,
  );

  it(
    "answers a version the registry does not have with an install error",
    async () => {
      const answer = await reply(
        withPackages,
        request("module.exports = async () => 1", { packages: ["lodash@99.0.0"] }),
      );
      expect(answer).toMatchObject({
        ok: false,
        error: {
          code: "SANDBOX_UNAVAILABLE",
          message: expect.stringContaining("could not install packages"),
          installError: { reason: "not-found", detail: expect.stringContaining("lodash@99.0.0") },
        },
      });
    },
    INSTALL_TIMEOUT_MS,
  );

  it(
    "bounds an install in time and the cache in size (least recently used sets go first)",
    async () => {
      const slow = new NodeRunner({ warmPerCordon: 0, packageCacheRoot: join(cacheRoot, "slow"), installTimeoutMs: 1 });
      const small = new NodeRunner({
        warmPerCordon: 0,
        packageCacheRoot: join(cacheRoot, "small"),
        packageCacheMaxBytes: 8 * 1024 * 1024,
      });
      const tiny = new NodeRunner({
        warmPerCordon: 0,
        packageCacheRoot: join(cacheRoot, "tiny"),
        packageCacheMaxBytes: 1024 * 1024,
      });
      runners.push(slow, small, tiny);
      const version = "module.exports = async () => require('lodash').VERSION";

      const timedOut = await reply(slow, request(version, { packages: ["lodash@4.17.21"] }));
      expect(timedOut).toMatchObject({ ok: false, error: { installError: { reason: "timeout" } } });

      const tooLarge = await reply(tiny, request(version, { packages: ["lodash@4.17.21"] }));
      expect(tooLarge).toMatchObject({ ok: false, error: { installError: { reason: "too-large" } } });

      // Each lodash is ~5 MiB: the second set pushes the first (least recently used) out.
      for (const spec of ["lodash@4.17.21", "lodash@4.17.20"]) {
        const result = report(await reply(small, request(version, { packages: [spec] })));
        expect(result.metrics.packageCache).toBe("miss");
      }
      expect(small.status.packages?.entries).toBe(1);
      const again = report(await reply(small, request(version, { packages: ["lodash@4.17.20"] })));
      expect(again.metrics.packageCache).toBe("hit");
      const evicted = report(await reply(small, request(version, { packages: ["lodash@4.17.21"] })));
      expect(evicted.metrics.packageCache).toBe("miss");
      expect(output(evicted)).toBe("4.17.21");
    },
    INSTALL_TIMEOUT_MS,
  );
});

describe("node jobs: waiting for a slot", () => {
  const single = new NodeRunner({ warmPerCordon: 0, maxConcurrent: 1 });
  runners.push(single);
  const sleeps = (ms: number) =>
    `module.exports = async () => { await new Promise((r) => setTimeout(r, ${ms})); return 'ran' }`;

  it("never starts a job cancelled while it waits, nor one cancelled before it arrived", async () => {
    const holder = reply(single, request(sleeps(1_000)));
    await new Promise((resolve) => setTimeout(resolve, 200));
    const queued = request("module.exports = async () => 'ran'");
    const waiting = reply(single, queued);
    expect(single.cancel(queued.executionId)).toBe(true);
    const waited = await waiting;
    expect(waited).toMatchObject({ ok: false, error: { code: "SANDBOX_UNAVAILABLE" } });
    expect(!waited.ok && waited.error.message).toContain("cancelled while it waited");

    const early = request("module.exports = async () => 'ran'");
    expect(single.cancel(early.executionId)).toBe(false);
    const answer = await reply(single, early);
    expect(answer).toMatchObject({ ok: false, error: { code: "SANDBOX_UNAVAILABLE" } });
    expect(report(await holder).calls[0]).toMatchObject({ ok: true });
  });

  it("never starts a job whose timeout ran out while it waited, and answers it then", async () => {
    let holderDone = false;
    const holder = reply(single, request(sleeps(1_500))).then((answer) => ((holderDone = true), answer));
    await new Promise((resolve) => setTimeout(resolve, 200));
    const late = await reply(single, request("module.exports = async () => 'ran'", { timeoutMs: 500 }));
    expect(late).toMatchObject({ ok: false, error: { code: "SANDBOX_UNAVAILABLE" } });
    expect(!late.ok && late.error.message).toContain("used up its timeout");
    // Answered at its own deadline, not when the slot it waited for came free.
    expect(holderDone).toBe(false);
    expect(report(await holder).calls[0]).toMatchObject({ ok: true });
  });

  it("names the job's own timeout when one that waited for a slot runs out of it", async () => {
    const holder = reply(single, request(sleeps(600)));
    await new Promise((resolve) => setTimeout(resolve, 200));
    const waited = report(
      await reply(
        single,
        request("module.exports = async () => { for (;;); }", { timeoutMs: 1_500, cpuTimeMs: 60_000 }),
      ),
    );
    expect(waited.limitHit).toMatchObject({
      code: "SANDBOX_TIMEOUT",
      message: "the job ran past its timeout of 1500 ms and was killed",
    });
    expect(report(await holder).calls[0]).toMatchObject({ ok: true });
  });
});

describe("node jobs: availability", () => {
  it("says how to install bubblewrap when it is missing", async () => {
    const missing = new NodeRunner({ toolPath: "/nonexistent" });
    const reply = await missing.run(
      NodeRunRequest.parse({ executionId: "x", code: "1", inputs: [1], timeoutMs: 1000 }),
    );
    expect(reply).toMatchObject({ ok: false, error: { code: "SANDBOX_UNAVAILABLE" } });
    expect(!reply.ok && reply.error.message).toContain("apt-get install -y bubblewrap");
  });
});

describe("POST /v1/node/run", () => {
  const token = randomBytes(16).toString("hex");
  let host: RunningHost;
  const jobDbPersistDir = mkdtempSync(join(tmpdir(), "cordon-host-job-db-"));

  beforeAll(async () => {
    host = await startHost({ port: 0, token, edgeRunners: 1, heapLimitMb: 128, jobDbPersistDir });
  });

  afterAll(async () => {
    await host.close();
    rmSync(jobDbPersistDir, { recursive: true, force: true });
  });

  const post = (body: unknown, auth = `Bearer ${token}`) =>
    fetch(`${host.url}/v1/node/run`, {
      method: "POST",
      headers: { authorization: auth, "content-type": "application/json" },
      body: JSON.stringify(body),
    });

  it("needs the host token", async () => {
    const response = await post({}, "Bearer wrong");
    expect(response.status).toBe(401);
  });

  it("refuses an invalid request before starting anything", async () => {
    const response = await post({ executionId: "x", code: "", inputs: [], timeoutMs: -1 });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: expect.stringContaining("invalid request") });
  });

  it("refuses a package spec that is not name@exact-version", async () => {
    for (const spec of ["lodash@^4.17.21", "lodash", "git+https://example.com/x.git", "lodash@latest"]) {
      const response = await post({
        executionId: "x",
        code: "module.exports = async () => 1",
        inputs: [null],
        timeoutMs: 5_000,
        packages: [spec],
      });
      expect([spec, response.status]).toEqual([spec, 400]);
      expect(await response.json()).toMatchObject({ error: expect.stringContaining("packages") });
    }
  });

  it("runs a job and answers 200 with its report", async () => {
    const response = await post({
      executionId: "http-1",
      code: "module.exports = async (c) => { console.info('hi'); return c.input + 1 }",
      inputs: [41],
      timeoutMs: 5_000,
      memoryMb: 128,
      cpuTimeMs: 5_000,
      captureConsole: true,
      maxLogEntries: 10,
      maxLogBytes: 1024,
      maxOutputBytes: 1024,
      limits: { maxFileSize: 1024, maxFiles: 10, maxSubprocesses: 0, maxFileDescriptors: 64, writable: ["/tmp"] },
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { ok: boolean; report: NodeRunReport };
    expect(body.ok).toBe(true);
    expect(body.report.calls).toEqual([{ ok: true, outputJson: "42" }]);
    expect(body.report.logs).toMatchObject([{ level: "info", message: "hi" }]);
    expect(body.report.limitHit).toBeNull();
  });
});
