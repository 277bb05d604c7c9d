/**
 * The job harness: the main module of the Node process inside each bubblewrap sandbox.
 *
 * Descriptors, set up by the host before bwrap starts (non-blocking sockets: see readAll/writeAll):
 *   fd 0  stdin   held open by the local host, which kills the sandbox once it has counted the
 *                 job's files; at EOF (a home without that wait) the harness exits by itself
 *   fd 1  stdout  collected (bounded) by the host, separately from the records
 *   fd 2  stderr  likewise
 *   fd 3  records one line per record: `<nonce> <json>\n`, read by the host. The very first line,
 *         `waiting\n` (no nonce: none is known yet), tells the host the harness is up and waiting for
 *         its setup; a warm sandbox is handed out only after it.
 *   fd 4  setup   JSON from the host (nonce, inputs, log and output bounds); read to EOF, then closed.
 *         It may come at once (a cold start) or much later (a warm sandbox waits in the host's pool),
 *         so it is read through the event loop: an idle harness spends no CPU, which would otherwise
 *         count against the job's cgroup CPU total and RLIMIT_CPU.
 *
 * The nonce is read from fd 4 and closed before the job is imported, and lives only in this module's
 * scope, so a job that writes to fd 3 itself cannot produce a line the host accepts. (Nothing security
 * relevant travels on fd 3 anyway: which limit fired is decided by the host from the kernel's counters
 * and the exit status, never from a record; everything else on it is what the job could say by
 * returning or logging.)
 *
 * Everything used after the job is loaded (fs, JSON, the clock, process.exit) is captured first, so a
 * job that patches globals cannot blind the harness.
 */
import { closeSync, readSync, writeSync } from "node:fs";
import { Buffer } from "node:buffer";
import { registerHooks } from "node:module";
import process from "node:process";
import { format } from "node:util";

const RECORDS_FD = 3;
const SETUP_FD = 4;
const JOB_URL = "file:///workspace/job.js";
/** The egress proxy's socket (host/node/egress-proxy.ts) and the port HTTP(S)_PROXY names (sandbox-command.ts). */
const EGRESS_SOCKET = "/workspace/egress.sock";
const EGRESS_PORT = 3128;
const MAX_LOG_MESSAGE_CHARS = 8 * 1024;
/** As src/untrusted-output.ts: the host drops a record line longer than these allow. */
const MAX_NAME_CHARS = 256;
const MAX_MESSAGE_CHARS = 16 * 1024;
const MAX_STACK_CHARS = 16 * 1024;
/** Log level per console method (as in the edge harness). */
const LEVELS = { log: "log", info: "info", warn: "warn", error: "error", debug: "debug", trace: "debug", dir: "log" };

const now = Date.now.bind(Date);
const stringify = JSON.stringify.bind(JSON);
const keysOf = Object.keys;
// Copies, not the imports: a job can re-point a builtin's ESM exports (module.syncBuiltinESMExports).
const write = writeSync;
const utf8Bytes = Buffer.from.bind(Buffer);
const utf8Length = Buffer.byteLength.bind(Buffer);
const byteLength = (text) => utf8Length(text, "utf8");
const exit = process.exit.bind(process);
const resourceUsage = process.resourceUsage.bind(process);
const cpuUsage = process.cpuUsage.bind(process);

const sleeper = new Int32Array(new SharedArrayBuffer(4));
const pause = (ms) => Atomics.wait(sleeper, 0, 0, ms);

/**
 * Reads the setup descriptor to EOF, then closes it, so the job never finds it open. The descriptor
 * is our end of the socket pair the host's spawn made, which Node leaves blocking, so the read sleeps
 * until the hand-off without polling; that keeps node:net (≈ 1–3 ms of every start) out of the
 * harness. Should it ever arrive non-blocking, the read goes on through a net.Socket, which waits
 * without polling too.
 */
async function readSetup(fd) {
  const chunks = [];
  const buffer = Buffer.allocUnsafe(64 * 1024);
  for (;;) {
    let read;
    try {
      read = readSync(fd, buffer, 0, buffer.length, null);
    } catch (error) {
      if (error?.code !== "EAGAIN") throw error;
      return readRestAsync(fd, chunks);
    }
    if (read === 0) break;
    chunks.push(Buffer.from(buffer.subarray(0, read)));
  }
  closeSync(fd);
  return Buffer.concat(chunks).toString("utf8");
}

async function readRestAsync(fd, chunks) {
  const { Socket } = process.getBuiltinModule("node:net");
  const socket = new Socket({ fd, readable: true, writable: false });
  for await (const chunk of socket) chunks.push(chunk);
  // The 'close' event comes after libuv has closed the fd.
  if (!socket.closed) await new Promise((resolve) => socket.destroy().once("close", resolve));
  return Buffer.concat(chunks).toString("utf8");
}

/** The descriptors are sockets the host made non-blocking: a full one answers EAGAIN, so wait and retry. */
function writeAll(fd, text) {
  const bytes = utf8Bytes(text, "utf8");
  let offset = 0;
  while (offset < bytes.length) {
    try {
      offset += write(fd, bytes, offset);
    } catch (error) {
      if (error?.code !== "EAGAIN") throw error;
      pause(1);
    }
  }
}

/**
 * A record's JSON, written without JSON.stringify's walk of objects: that walk calls any `toJSON`
 * the job put on Object.prototype, which could rewrite every record. Records are objects of
 * primitives, one level deep for an error; stringify is only given primitives, which have no toJSON.
 */
function recordJson(value) {
  if (value === null || typeof value !== "object") return stringify(value);
  const keys = keysOf(value);
  let json = "";
  for (let i = 0; i < keys.length; i++) {
    const field = value[keys[i]];
    if (field === undefined) continue;
    json += (json === "" ? "" : ",") + stringify(keys[i]) + ":" + recordJson(field);
  }
  return "{" + json + "}";
}

function emit(record) {
  try {
    writeAll(RECORDS_FD, nonce + " " + recordJson(record) + "\n");
  } catch {
    // The host is gone or the job closed fd 3: there is no one left to tell.
  }
}

/**
 * The sandbox's network namespace has only `lo`. Its one way out is the host's egress proxy for this
 * job, a Unix socket the host creates at hand-off; `forwardEgress` forwards the loopback port the
 * sandbox's HTTP(S)_PROXY names to it. Every check is the proxy's, so a job that closes this or talks
 * to the socket itself gains nothing.
 */
function forwardEgress() {
  const { connect, createServer } = process.getBuiltinModule("node:net");
  const server = createServer((client) => {
    const upstream = connect(EGRESS_SOCKET);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
    client.pipe(upstream).pipe(client);
  });
  server.on("error", () => undefined);
  // An IP address binds at once: a connection right after this call is accepted.
  server.listen(EGRESS_PORT, "127.0.0.1");
  server.unref();
}

/**
 * Points Node's fetch, http and https at the proxy, on the job's first use of any of them: the
 * forwarder, Node's HTTP client and TLS cost ~50 ms to load, which a cold start would otherwise pay
 * for every job, most of which never touch the network.
 */
function routeThroughProxyOnFirstUse() {
  if (!process.env.HTTP_PROXY) return;
  let routed = false;
  const route = () => {
    if (routed) return;
    routed = true;
    forwardEgress();
    process
      .getBuiltinModule("node:http")
      .setGlobalProxyFromEnv({ HTTP_PROXY: process.env.HTTP_PROXY, HTTPS_PROXY: process.env.HTTPS_PROXY });
  };
  // require() and import of node:http or node:https, before the job holds the module.
  registerHooks({
    resolve(specifier, context, nextResolve) {
      if (/^(node:)?https?$/.test(specifier)) route();
      return nextResolve(specifier, context);
    },
  });
  const fetch = globalThis.fetch;
  globalThis.fetch = function (...args) {
    route();
    globalThis.fetch = fetch;
    return Reflect.apply(fetch, this, args);
  };
}
routeThroughProxyOnFirstUse();

// Before any setup (and so before any nonce) exists: the host's cue that this sandbox is ready.
writeAll(RECORDS_FD, "waiting\n");
const setup = JSON.parse(await readSetup(SETUP_FD));
const nonce = setup.nonce;

const sliceText = Function.prototype.call.bind(String.prototype.slice);

function clip(text, max) {
  return text.length > max ? sliceText(text, 0, max) + "… [truncated]" : text;
}

function describeError(error) {
  if (error !== null && typeof error === "object") {
    let name = "Error";
    let message = "";
    let stack = "";
    let code;
    try {
      name = clip(String(error.name ?? "Error"), MAX_NAME_CHARS);
    } catch {
      // A hostile getter: keep the default.
    }
    try {
      message = clip(String(error.message ?? ""), MAX_MESSAGE_CHARS);
    } catch {
      // likewise
    }
    try {
      stack = clip(String(error.stack ?? ""), MAX_STACK_CHARS);
    } catch {
      // likewise
    }
    try {
      if (typeof error.code === "string") code = error.code;
    } catch {
      // likewise
    }
    return { name, message, stack, code };
  }
  let message;
  try {
    message = clip(String(error), MAX_MESSAGE_CHARS);
  } catch {
    message = "[unprintable thrown value]";
  }
  return { name: "NonErrorThrown", message, stack: "" };
}

function captureConsole(sink) {
  const record = (level, args) => {
    if (sink.entries >= setup.maxLogEntries || sink.bytes >= setup.maxLogBytes) {
      sink.dropped++;
      return;
    }
    let message;
    try {
      message = format(...args);
    } catch {
      message = "[unprintable log arguments]";
    }
    message = clip(message, MAX_LOG_MESSAGE_CHARS);
    const size = byteLength(message);
    if (sink.bytes + size > setup.maxLogBytes) {
      sink.dropped++;
      sink.bytes = setup.maxLogBytes;
      return;
    }
    sink.entries++;
    sink.bytes += size;
    emit({ t: "log", level, message, timestamp: now() });
  };
  const replacement = {};
  for (const method of Object.keys(LEVELS)) {
    replacement[method] = (...args) => record(LEVELS[method], args);
  }
  // console.table, console.assert, console.count… route through this.log / this.warn.
  Object.assign(globalThis.console, replacement);
}

function settle(value) {
  let json;
  try {
    json = stringify(value === undefined ? null : value);
  } catch (error) {
    return {
      ok: false,
      error: {
        name: "CordonOutputNotSerializable",
        message: "the return value is not JSON-serialisable: " + describeError(error).message,
        stack: "",
      },
    };
  }
  if (json === undefined) json = "null";
  const size = byteLength(json);
  if (size > setup.maxOutputBytes) {
    return {
      ok: false,
      error: {
        name: "CordonOutputTooLarge",
        message: "the output is " + size + " bytes; the limit is " + setup.maxOutputBytes,
        stack: "",
      },
    };
  }
  return { ok: true, outputJson: json };
}

function pickFunction(namespace) {
  // ESM: the default export. CommonJS: module.exports (which import() exposes as default), or a
  // transpiled module's exports.default.
  const exported = namespace.default;
  if (typeof exported === "function") return exported;
  if (exported !== null && typeof exported === "object" && typeof exported.default === "function") {
    return exported.default;
  }
  throw new TypeError(
    "the job must export a function: `module.exports = async function (context) {…}` or " +
      "`export default async function (context) {…}`",
  );
}

const sink = { entries: 0, bytes: 0, dropped: 0 };
if (setup.captureConsole) captureConsole(sink);

// A stray rejection or throw from the job's background work is logged, not fatal: it must not cost the
// calls that are still to come.
process.on("uncaughtException", (error) => {
  const info = describeError(error);
  emit({ t: "uncaught", error: info });
  if (setup.captureConsole) globalThis.console.error("Uncaught " + (info.stack || info.message));
});
process.on("unhandledRejection", (reason) => {
  const info = describeError(reason);
  emit({ t: "uncaught", error: info });
  if (setup.captureConsole) globalThis.console.error("Unhandled rejection: " + (info.stack || info.message));
});

// process.execve replaces this process without forking, so the pids limit never sees it: a job could
// run native code (written to /tmp) with maxSubprocesses 0. --no-addons already refuses process.dlopen.
// Nothing the job can reach brings it back (process.binding has no process_methods).
delete process.execve;

emit({ t: "ready" });

let job;
let loadError;
try {
  job = pickFunction(await import(JOB_URL));
} catch (error) {
  loadError = describeError(error);
}

for (let index = 0; index < setup.inputs.length; index++) {
  let outcome;
  if (loadError) {
    outcome = { ok: false, error: loadError };
  } else {
    try {
      const context = { input: setup.inputs[index], index, executionId: setup.executionId };
      outcome = settle(await job(context));
    } catch (error) {
      outcome = { ok: false, error: describeError(error) };
    }
  }
  emit({ t: "call", index, ...outcome });
}

const usage = resourceUsage();
const cpu = cpuUsage();
emit({
  t: "done",
  logsDropped: sink.dropped,
  maxRssKb: usage.maxRSS,
  cpuMs: Math.round((cpu.user + cpu.system) / 1000),
});

// Keep the sandbox's mounts alive until the host has counted the files in its writable paths: the
// local host then kills the sandbox (stdin stays open); a home that counts after the exit gives the
// harness an empty stdin (the container's job script: </dev/null), and it goes at once.
const byte = Buffer.alloc(1);
for (;;) {
  try {
    if (readSync(0, byte) === 0) break;
  } catch (error) {
    if (error?.code !== "EAGAIN") break;
    pause(2);
  }
}
exit(0);
