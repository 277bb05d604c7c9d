/**
 * Source of the harness: the main module of every edge isolate (as `harness.js`).
 *
 * It arms the guard, installs console capture and the network-attempt traps, then imports the job
 * module and calls it: once per input for a function export, once with the built request for a Worker
 * `{ fetch }` export. It returns its report as JSON text of bounded length and never throws across
 * RPC. Judging the report (which error code, whether test cases passed) is the dispatcher's job, not
 * code in this isolate.
 *
 * Everything the harness relies on after the job has run (clock, timers, JSON, TextEncoder) is
 * captured before the job module is evaluated, so a job that patches globals cannot blind it.
 */
import { MAX_BINDING_CALL_CHARS, MAX_BINDING_CALLS_IN_FLIGHT } from "../../bindings/protocol";
import { MAX_MESSAGE_CHARS, MAX_NAME_CHARS, MAX_STACK_CHARS, OUTPUT_TOO_LARGE_ERROR } from "../../untrusted-output";
import { MAX_REPORT_CHARS, type HarnessReport } from "../protocol";

/** The report that stands in for one too large to leave the isolate (judged SANDBOX_OUTPUT_TOO_LARGE). */
const REPORT_TOO_LARGE = JSON.stringify({
  exportKind: "invalid",
  loadError: {
    name: OUTPUT_TOO_LARGE_ERROR,
    message: `the job's report is over ${MAX_REPORT_CHARS} characters`,
    stack: "",
  },
  calls: [],
  logs: [],
  logBytes: 0,
  logsDropped: 0,
  network: [],
  guard: { ticks: 0, tripped: false, stack: null },
  runMs: 0,
} satisfies HarnessReport);

export const HARNESS_SOURCE = String.raw`
import { WorkerEntrypoint } from "cloudflare:workers";
import * as guard from "./cordon-guard.js";
import { blockNetwork, networkAttempts } from "./cordon-net.js";
import { installEgressFetch } from "./cordon-egress.js";

const now = Date.now.bind(Date);
const schedule = setTimeout.bind(globalThis);
const unschedule = clearTimeout.bind(globalThis);
const stringify = JSON.stringify.bind(JSON);
const race = Promise.race.bind(Promise);
const resolved = Promise.resolve.bind(Promise);
const NativePromise = Promise;
const MAX_BINDING_CALL_CHARS = ${MAX_BINDING_CALL_CHARS};
const MAX_BINDING_CALLS_IN_FLIGHT = ${MAX_BINDING_CALLS_IN_FLIGHT};
const MAX_REPORT_CHARS = ${MAX_REPORT_CHARS};
const OUTPUT_TOO_LARGE = "${OUTPUT_TOO_LARGE_ERROR}";
/** A literal: nothing the job does can make it longer. */
const REPORT_TOO_LARGE = ${JSON.stringify(REPORT_TOO_LARGE)};
const sliceText = Function.prototype.call.bind(String.prototype.slice);
const clip = (text, max) => (text.length > max ? sliceText(text, 0, max) : text);
const encoder = new TextEncoder();
const byteLength = (text) => encoder.encode(text).length;
const TIMED_OUT = Symbol("timed out");
/** Errors the harness raised for refused binding calls: their code survives if the job does not catch them. */
const bindingRefusals = new WeakSet();

class CordonBindingError extends Error {
  constructor(error) {
    super(String(error?.message ?? "the binding call was refused"));
    this.name = "CordonBindingError";
    this.code = String(error?.code ?? "SANDBOX_RUNTIME_ERROR");
    if (error?.rule !== undefined) this.rule = String(error.rule);
  }
}
const LEVELS = { log: "log", info: "info", warn: "warn", error: "error", debug: "debug", trace: "debug" };

function describeError(error) {
  if (error !== null && typeof error === "object") {
    if (bindingRefusals.has(error)) {
      return { name: error.name, message: error.message, stack: String(error.stack ?? ""), code: error.code, ...(error.rule === undefined ? {} : { rule: error.rule }) };
    }
    let name = "Error", message = "", stack = "";
    try { name = clip(String(error.name ?? "Error"), ${MAX_NAME_CHARS}); } catch {}
    try { message = clip(String(error.message ?? ""), ${MAX_MESSAGE_CHARS}); } catch {}
    try { stack = clip(String(error.stack ?? ""), ${MAX_STACK_CHARS}); } catch {}
    return { name, message, stack };
  }
  let message = "";
  try { message = clip(String(error), ${MAX_MESSAGE_CHARS}); } catch { message = "[unprintable thrown value]"; }
  return { name: "NonErrorThrown", message, stack: "" };
}

function formatArg(value) {
  if (typeof value === "string") return value;
  if (value instanceof Error) return describeError(value).stack || describeError(value).message;
  if (value === undefined) return "undefined";
  if (typeof value === "function") return "[Function " + (value.name || "anonymous") + "]";
  if (typeof value === "bigint") return value.toString() + "n";
  if (typeof value === "symbol") return value.toString();
  try {
    const json = stringify(value);
    return json === undefined ? String(value) : json;
  } catch {
    try { return String(value); } catch { return "[unprintable]"; }
  }
}

function captureConsole(spec, sink) {
  const record = (level, args) => {
    if (sink.entries.length >= spec.maxLogEntries || sink.bytes >= spec.maxLogBytes) {
      sink.dropped++;
      return;
    }
    let message = "";
    for (let i = 0; i < args.length; i++) message += (i === 0 ? "" : " ") + formatArg(args[i]);
    if (message.length > spec.maxLogMessageChars) {
      message = message.slice(0, spec.maxLogMessageChars) + "… [truncated]";
    }
    const size = byteLength(message);
    if (sink.bytes + size > spec.maxLogBytes) {
      sink.dropped++;
      sink.bytes = spec.maxLogBytes;
      return;
    }
    sink.bytes += size;
    sink.entries[sink.entries.length] = { level, message, timestamp: now() };
  };
  const replacement = {};
  for (const method of Object.keys(LEVELS)) {
    replacement[method] = (...args) => record(LEVELS[method], args);
  }
  globalThis.console = Object.assign(Object.create(null), console, replacement);
}

function hostOf(input) {
  try {
    const url = input instanceof Request ? input.url : input instanceof URL ? input.href : String(input);
    return new URL(url).hostname;
  } catch {
    return String(input);
  }
}

function trapNetwork() {
  globalThis.fetch = async (input) => {
    throw blockNetwork(hostOf(input), "fetch");
  };
  // The runtime refuses it too, but with its own error, which names no host and records nothing.
  globalThis.WebSocket = class WebSocket {
    constructor(url) {
      throw blockNetwork(hostOf(url), "websocket");
    }
  };
}

/**
 * At most max holders at once; the others wait in line. Its state lives in this closure and in
 * object literals' own properties, out of the job's reach.
 */
function slots(max) {
  let free = max;
  let first = null;
  let last = null;
  return {
    take() {
      if (free > 0) {
        free--;
        return resolved();
      }
      return new NativePromise((wake) => {
        const waiter = { wake, next: null };
        if (last === null) first = waiter;
        else last.next = waiter;
        last = waiter;
      });
    },
    give() {
      const waiter = first;
      if (waiter === null) {
        free++;
        return;
      }
      first = waiter.next;
      if (first === null) last = null;
      waiter.wake();
    },
  };
}

/** The error a refused binding call throws; its code survives if the job does not catch it. */
function bindingRefusal(refusal) {
  const error = new CordonBindingError(refusal);
  bindingRefusals.add(error);
  return error;
}

function refusedCall(message, rule) {
  return bindingRefusal({ code: "SANDBOX_SECURITY_VIOLATION", message, rule });
}

/**
 * The job's env: DB and KV as plain objects whose methods turn into binding calls; nothing else. The
 * stub stays in this closure. A call crosses as JSON text, measured here first: past the quota, or
 * too large, it never leaves the isolate (the dispatcher checks every call again).
 */
function jobEnv(spec, stub) {
  const env = {};
  if (!stub) return Object.freeze(env);
  const inFlight = slots(MAX_BINDING_CALLS_IN_FLIGHT);
  let sent = 0;
  const call = async (payload) => {
    if (sent >= spec.maxBindingCalls) {
      throw refusedCall("the job used all " + spec.maxBindingCalls + " of its binding calls", "binding_call_quota");
    }
    let json;
    try {
      json = stringify(payload);
    } catch (error) {
      throw refusedCall("malformed binding call: " + describeError(error).message, "malformed_call");
    }
    if (typeof json !== "string") throw refusedCall("malformed binding call", "malformed_call");
    if (json.length > MAX_BINDING_CALL_CHARS) {
      throw refusedCall("a binding call carries at most " + MAX_BINDING_CALL_CHARS + " characters of JSON; this one has " + json.length, "call_too_large");
    }
    sent++;
    await inFlight.take();
    let answer;
    try {
      answer = await stub.call(json);
    } finally {
      inFlight.give();
    }
    if (answer !== null && typeof answer === "object" && answer.ok === true) return answer.value;
    throw bindingRefusal(answer?.error);
  };
  if (spec.bindings.includes("DB")) {
    env.DB = Object.freeze({
      query: (sql, params) => call({ binding: "DB", method: "query", sql, params: params ?? [] }),
    });
  }
  if (spec.bindings.includes("KV")) {
    env.KV = Object.freeze({
      get: (key) => call({ binding: "KV", method: "get", key }),
      put: (key, value, options) =>
        call({ binding: "KV", method: "put", key, value, ...(options?.expirationTtl === undefined ? {} : { expirationTtl: options.expirationTtl }) }),
      delete: (key) => call({ binding: "KV", method: "delete", key }),
      list: (options) => call({ binding: "KV", method: "list", ...(options ?? {}) }),
    });
  }
  return Object.freeze(env);
}

async function readBounded(response, maxBytes) {
  if (response.body === null) return { text: "", tooLarge: false };
  const reader = response.body.getReader();
  const chunks = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel();
      return { text: "", tooLarge: true, total };
    }
    chunks[chunks.length] = value;
  }
  const joined = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    joined.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return { text: new TextDecoder().decode(joined), tooLarge: false };
}

function outputTooLarge(size, max) {
  return { ok: false, error: { name: OUTPUT_TOO_LARGE, message: "the output is " + size + " bytes; the limit is " + max, stack: "" } };
}

function settle(value, spec) {
  let json;
  try {
    json = stringify(value === undefined ? null : value);
  } catch (error) {
    return { ok: false, error: { name: "CordonOutputNotSerializable", message: "the return value is not JSON-serialisable: " + describeError(error).message, stack: "" } };
  }
  if (json === undefined) json = "null";
  const size = byteLength(json);
  if (size > spec.maxOutputBytes) return outputTooLarge(size, spec.maxOutputBytes);
  return { ok: true, outputJson: json };
}

async function callFetch(handler, spec, env) {
  const r = spec.request;
  const request = new Request(r.url, { method: r.method, headers: r.headers, body: r.body ?? undefined });
  const ctx = { waitUntil() {}, passThroughOnException() {}, props: {} };
  const response = await handler.fetch(request, env, ctx);
  if (!(response instanceof Response)) {
    return { ok: false, error: { name: "TypeError", message: "fetch() must return a Response", stack: "" } };
  }
  const body = await readBounded(response, spec.maxOutputBytes);
  if (body.tooLarge) return outputTooLarge(body.total, spec.maxOutputBytes);
  const headers = {};
  response.headers.forEach((value, key) => { headers[key] = value; });
  return settle({ status: response.status, headers, body: body.text }, spec);
}

/** The JSON text of value if it has at most max characters (a primitive's length: unpatchable), else null. */
function textWithin(value, max) {
  let text;
  try {
    text = stringify(value);
  } catch {
    return null;
  }
  return typeof text === "string" && text.length <= max ? text : null;
}

/**
 * The report as JSON text, the only form that leaves the isolate: whole if it fits in
 * MAX_REPORT_CHARS, else with the first log entries that fit beside the rest (the dispatcher recounts
 * the logs), else REPORT_TOO_LARGE.
 */
function reportText(report) {
  const whole = textWithin(report, MAX_REPORT_CHARS);
  if (whole !== null) return whole;
  const logs = report.logs;
  const rest = textWithin({ ...report, logs: [] }, MAX_REPORT_CHARS);
  if (rest === null) return REPORT_TOO_LARGE;
  let room = MAX_REPORT_CHARS - rest.length;
  const kept = [];
  for (let i = 0; i < logs.length; i++) {
    const entry = textWithin(logs[i], room - 1);
    if (entry === null) break;
    room -= entry.length + 1;
    kept[i] = logs[i];
  }
  const trimmed = { ...report, logs: kept, logsDropped: report.logsDropped + logs.length - kept.length };
  return textWithin(trimmed, MAX_REPORT_CHARS) ?? REPORT_TOO_LARGE;
}

export class Harness extends WorkerEntrypoint {
  async run(spec) {
    const startedAt = now();
    guard.arm(spec.deadline);
    const sink = { entries: [], bytes: 0, dropped: 0 };
    if (spec.captureConsole) captureConsole(spec, sink);
    // With network, fetch goes to the egress gateway (globalOutbound), which enforces and records;
    // the wrapper only makes its refusals throw. Without, fetch is trapped.
    if (spec.network) installEgressFetch();
    else trapNetwork();

    let timer;
    const expired = new Promise((resolve) => {
      timer = schedule(() => resolve(TIMED_OUT), Math.max(0, spec.deadline - now()));
    });
    const withinDeadline = (promise) => race([promise, expired]);

    const env = jobEnv(spec, this.env.BINDINGS);
    const calls = [];
    let exportKind = "invalid";
    let loadError = null;
    let timedOut = false;
    try {
      const loaded = await withinDeadline(import("./job.js"));
      if (loaded === TIMED_OUT) {
        timedOut = true;
      } else {
        const handler = loaded.default;
        if (typeof handler === "function") exportKind = "function";
        else if (handler !== null && typeof handler === "object" && typeof handler.fetch === "function") exportKind = "fetch-handler";

        if (exportKind === "function") {
          for (const input of spec.inputs) {
            const ctx = { env, executionId: spec.executionId };
            const outcome = await withinDeadline(
              resolved().then(() => handler(input, ctx)).then(
                (value) => settle(value, spec),
                (error) => ({ ok: false, error: describeError(error) }),
              ),
            );
            if (outcome === TIMED_OUT) { timedOut = true; break; }
            calls[calls.length] = outcome;
            if (guard.report().tripped) break;
          }
        } else if (exportKind === "fetch-handler") {
          const outcome = await withinDeadline(
            callFetch(handler, spec, env).catch((error) => ({ ok: false, error: describeError(error) })),
          );
          if (outcome === TIMED_OUT) timedOut = true;
          else calls[calls.length] = outcome;
        }
      }
    } catch (error) {
      loadError = describeError(error);
    } finally {
      unschedule(timer);
    }
    if (timedOut) guard.expire();

    const guardReport = guard.report();
    return reportText({
      exportKind,
      loadError,
      calls,
      logs: sink.entries,
      logBytes: sink.bytes,
      logsDropped: sink.dropped,
      network: networkAttempts(),
      guard: { ...guardReport, stack: guardReport.stack === null ? null : clip(guardReport.stack, ${MAX_STACK_CHARS}) },
      runMs: now() - startedAt,
    });
  }
}

export default {
  fetch() {
    return new Response("not found", { status: 404 });
  },
};
`;
