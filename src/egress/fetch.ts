/**
 * The egress check of one request, for every home that runs jobs with network: the edge gateway
 * entrypoint (gateway.ts), the local sandbox host's egress proxy for node jobs (host/node/egress-proxy.ts)
 * and the Sandbox containers' outbound handler. `egressFetch` checks the request against the job's
 * policy, sends it upstream itself with `redirect: "manual"`, follows redirects hop by hop (each hop
 * checked and counted) and meters request and response bodies while they stream, cutting them off at
 * the byte budget.
 *
 * A refusal is a 403 response carrying EGRESS_REFUSAL_HEADER and is recorded in the job's meter, which
 * is what the dispatcher judges by. Upstream failures (DNS, connection, a 307/308 that would need a
 * streamed body again) are thrown: the job's fetch rejects.
 *
 * Only web-standard APIs, and imports with their file extension: the local sandbox host (plain Node,
 * type stripping) imports this module as it is.
 */
import { ErrorCode } from "../errors.ts";
import type { EgressMeter, EgressRefusal } from "./meter.ts";
import { EGRESS_REFUSAL_HEADER, MAX_REDIRECT_HOPS, checkUrl, type EgressPolicy } from "./policy.ts";

export { EGRESS_REFUSAL_HEADER };

const KiB = 1024;
const MiB = 1024 * KiB;

/** Request bodies up to this size are held in memory so that a 307/308 can send them again. */
export const MAX_REPLAYABLE_BODY_BYTES = 1 * MiB;
/**
 * Request body bytes one job may have held at once, over all its requests in flight: without it, a
 * job firing many parallel 1 MiB uploads would make the gateway's isolate (the dispatcher) buffer them
 * all. Past it, bodies stream instead (and a 307/308 that needs one again fails, as it does in fetch).
 */
export const MAX_HELD_BODY_BYTES_PER_JOB = 4 * MiB;

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
/** Statuses that never carry a body (a 1xx never reaches a fetch caller). */
const NULL_BODY_STATUSES = new Set([204, 205, 304]);
/** Methods that open tunnels or reflect credentials; nothing a job needs. */
const REFUSED_METHODS = new Set(["CONNECT", "TRACE", "TRACK"]);
/**
 * Never forwarded: `host` would let a job name another site behind a shared address (domain fronting),
 * lengths and encodings are recomputed for the body actually sent.
 */
const DROPPED_REQUEST_HEADERS = ["host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade"];
/** Dropped when a redirect crosses origins (as the Fetch standard does for Authorization). */
const CREDENTIAL_HEADERS = ["authorization", "cookie", "proxy-authorization"];
/** Dropped when a redirect turns the request into a GET without a body. */
const BODY_HEADERS = ["content-type", "content-encoding", "content-language", "content-location"];

/** Sends one request to the network (production: the runtime's `fetch`). */
export type Upstream = (request: Request) => Promise<Response>;

export interface EgressContext {
  policy: EgressPolicy;
  meter: EgressMeter;
  upstream: Upstream;
}

/** The refusal as the job receives it: a 403 with the error envelope and the marker header. */
export function refusalResponse(refusal: EgressRefusal): Response {
  return Response.json(
    {
      error: {
        code: ErrorCode.SANDBOX_NETWORK_BLOCKED,
        message: refusal.message,
        rule: refusal.rule,
        host: refusal.host,
      },
    },
    { status: 403, headers: { [EGRESS_REFUSAL_HEADER]: refusal.rule } },
  );
}

type HeldBody =
  | { kind: "none" }
  | { kind: "bytes"; bytes: Uint8Array<ArrayBuffer> }
  | { kind: "stream"; stream: ReadableStream<Uint8Array> };

/** The request as the gateway sends it on: what changes from hop to hop. */
interface Outgoing {
  url: URL;
  host: string;
  method: string;
  headers: Headers;
  body: HeldBody;
}

/**
 * Applies the job's policy to one request and answers it. Never throws for a policy reason (the
 * answer is then a refusal response); throws what the upstream throws, like `fetch` would.
 */
export async function egressFetch(request: Request, context: EgressContext): Promise<Response> {
  const { policy, meter } = context;
  const refuse = (refusal: EgressRefusal): Response => {
    meter.refuse(refusal);
    return refusalResponse(refusal);
  };

  if (meter.closed) return refuse({ rule: "job_not_running", host: "", message: "the job has ended" });
  const first = checkUrl(request.url, policy);
  if (!first.ok) return refuse({ rule: first.rule, host: first.host, message: first.message });
  const method = request.method.toUpperCase();
  if (REFUSED_METHODS.has(method)) {
    return refuse({ rule: "method_not_allowed", host: first.host, message: `the method ${method} is not allowed` });
  }
  if (meter.requests >= policy.maxRequests) return refuse(requestBudget(first.host, policy));

  const headers = new Headers(request.headers);
  for (const name of DROPPED_REQUEST_HEADERS) headers.delete(name);
  headers.delete(EGRESS_REFUSAL_HEADER);
  const held = await holdBody(request.body, meter);
  try {
    const outgoing: Outgoing = { url: first.url, host: first.host, method, headers, body: held.body };
    return await sendFollowingRedirects(outgoing, request.redirect, context);
  } finally {
    meter.releaseHeld(held.bytes);
  }
}

/** Sends the request, then each redirect hop the policy allows, and answers with the last response. */
async function sendFollowingRedirects(
  outgoing: Outgoing,
  redirectMode: string,
  { policy, meter, upstream }: EgressContext,
): Promise<Response> {
  const refuse = (refusal: EgressRefusal): Response => {
    meter.refuse(refusal);
    return refusalResponse(refusal);
  };
  let { url, host, method, body } = outgoing;
  const headers = outgoing.headers;
  /** Set by a metered body that ran past the byte budget during this call. */
  let cutOff: EgressRefusal | undefined;
  const onCutOff = (refusal: EgressRefusal) => {
    cutOff = refusal;
  };

  for (let hops = 0; ; hops++) {
    // Holding the body and following a redirect both wait: the job may have ended meanwhile.
    if (meter.closed) return refuse({ rule: "job_not_running", host, message: "the job has ended" });
    if (meter.requests >= policy.maxRequests) return refuse(requestBudget(host, policy));
    let sent: BodyInit | null = null;
    if (body.kind === "bytes") {
      if (meter.bytes + body.bytes.byteLength > policy.maxBytes) return refuse(byteBudget(host, policy));
      meter.countBytes("sent", body.bytes.byteLength);
      sent = body.bytes;
    } else if (body.kind === "stream") {
      sent = body.stream.pipeThrough(meteredBody(meter, policy, host, "sent", onCutOff));
    }
    meter.countRequest();

    let response: Response;
    try {
      // `duplex` is what Node's fetch needs for a streamed body (workerd ignores it).
      const init = { method, headers, body: sent, redirect: "manual", signal: meter.signal, duplex: "half" };
      response = await upstream(new Request(url, init as RequestInit));
    } catch (error) {
      if (cutOff) return refusalResponse(cutOff);
      throw error;
    }
    if (cutOff) {
      await response.body?.cancel().catch(() => undefined);
      return refusalResponse(cutOff);
    }

    const location = response.headers.get("location");
    if (!REDIRECT_STATUSES.has(response.status) || location === null || redirectMode === "manual") {
      return meteredResponse(response, method, meter, policy, host);
    }
    // A redirect's own body is never delivered, so it is neither read nor counted.
    await response.body?.cancel().catch(() => undefined);
    if (hops + 1 > MAX_REDIRECT_HOPS) {
      return refuse({
        rule: "redirect_limit",
        host,
        message: `more than ${MAX_REDIRECT_HOPS} redirects (the last from ${url.href})`,
      });
    }
    let next: URL;
    try {
      next = new URL(location, url);
    } catch {
      throw new TypeError(`the redirect from ${url.href} has an invalid Location: ${location.slice(0, 256)}`);
    }
    const verdict = checkUrl(next, policy);
    if (!verdict.ok) {
      return refuse({
        rule: verdict.rule,
        host: verdict.host,
        message: `redirect from ${url.host} refused: ${verdict.message}`,
      });
    }

    const status = response.status;
    if (((status === 301 || status === 302) && method === "POST") || (status === 303 && method !== "HEAD")) {
      method = "GET";
      if (body.kind === "stream") await body.stream.cancel().catch(() => undefined);
      body = { kind: "none" };
      for (const name of BODY_HEADERS) headers.delete(name);
    } else if (body.kind === "stream") {
      // The body has gone upstream once and was never held: like fetch itself, fail rather than resend half.
      throw new TypeError(
        `cannot follow a ${status} redirect: the request body was streamed, not held, so it cannot be sent again`,
      );
    }
    if (next.origin !== url.origin) {
      for (const name of CREDENTIAL_HEADERS) headers.delete(name);
    }
    url = verdict.url;
    host = verdict.host;
  }
}

function requestBudget(host: string, policy: EgressPolicy): EgressRefusal {
  return { rule: "request_budget", host, message: `the job used all ${policy.maxRequests} of its network requests` };
}

function byteBudget(host: string, policy: EgressPolicy): EgressRefusal {
  return { rule: "byte_budget", host, message: `the job used all ${policy.maxBytes} bytes of its network budget` };
}

/**
 * Reads a request body into memory if it is at most MAX_REPLAYABLE_BODY_BYTES and the job's allowance
 * of held bytes lasts (so a 307/308 can send it again); otherwise it goes on as a stream, the part
 * already read first. `bytes` is what was taken from the allowance, to give back when the request ends.
 */
async function holdBody(
  body: ReadableStream<Uint8Array> | null,
  meter: EgressMeter,
): Promise<{ body: HeldBody; bytes: number }> {
  if (body === null) return { body: { kind: "none" }, bytes: 0 };
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return { body: { kind: "bytes", bytes: concat(chunks, size) }, bytes: size };
    chunks.push(value);
    const fits = size + value.byteLength <= MAX_REPLAYABLE_BODY_BYTES;
    if (!fits || !meter.hold(value.byteLength, MAX_HELD_BODY_BYTES_PER_JOB)) {
      return { body: { kind: "stream", stream: resume(chunks, reader) }, bytes: size };
    }
    size += value.byteLength;
  }
}

function concat(chunks: readonly Uint8Array[], size: number): Uint8Array<ArrayBuffer> {
  const joined = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    joined.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return joined;
}

function resume(chunks: Uint8Array[], reader: ReadableStreamDefaultReader<Uint8Array>): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const held = chunks.shift();
      if (held) return controller.enqueue(held);
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel: (reason) => reader.cancel(reason),
  });
}

/**
 * Counts body bytes into the meter as they pass. The chunk that crosses the budget is cut to fit
 * (so exactly `maxBytes` pass in total), the cut is recorded, and the stream errors on the reader's
 * next read: erroring at once would discard the part that fit from the queue.
 */
function meteredBody(
  meter: EgressMeter,
  policy: EgressPolicy,
  host: string,
  direction: "sent" | "received",
  onCutOff: (refusal: EgressRefusal) => void,
): TransformStream<Uint8Array, Uint8Array> {
  let cut: EgressRefusal | undefined;
  const fail = (controller: TransformStreamDefaultController<Uint8Array>, refusal: EgressRefusal) => {
    controller.error(new Error(`${ErrorCode.SANDBOX_NETWORK_BLOCKED}: ${refusal.message}`));
  };
  return new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      if (meter.closed) return controller.error(new Error("the job has ended"));
      if (cut) return fail(controller, cut);
      const room = Math.max(0, policy.maxBytes - meter.bytes);
      if (chunk.byteLength <= room) {
        meter.countBytes(direction, chunk.byteLength);
        controller.enqueue(chunk);
        return;
      }
      cut = byteBudget(host, policy);
      meter.refuse(cut);
      onCutOff(cut);
      if (room === 0) return fail(controller, cut);
      meter.countBytes(direction, room);
      controller.enqueue(chunk.slice(0, room));
    },
    flush(controller) {
      if (cut) fail(controller, cut);
    },
  });
}

async function meteredResponse(
  response: Response,
  method: string,
  meter: EgressMeter,
  policy: EgressPolicy,
  host: string,
): Promise<Response> {
  const headers = new Headers(response.headers);
  headers.delete(EGRESS_REFUSAL_HEADER);
  // The runtime hands us the decoded body and re-encodes on the way out: the upstream length is wrong.
  if (headers.has("content-encoding")) headers.delete("content-length");
  const init = { status: response.status, statusText: response.statusText, headers };
  if (response.body === null || method === "HEAD" || NULL_BODY_STATUSES.has(response.status)) {
    // Whatever a server sends after a HEAD, 204, 205 or 304 is not a body: never delivered, never counted.
    await response.body?.cancel().catch(() => undefined);
    return new Response(null, init);
  }
  const body = response.body.pipeThrough(meteredBody(meter, policy, host, "received", () => undefined));
  return new Response(body, init);
}
