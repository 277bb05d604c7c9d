/**
 * The egress proxy of one node job: the only way out of its sandbox. The sandbox has a network
 * namespace of its own with nothing but `lo`, so no address outside it can be reached; the one door
 * is this proxy's Unix socket, bound into the sandbox at /workspace/egress.sock. Inside, the harness
 * forwards 127.0.0.1:3128 to that socket, the sandbox's environment names it as HTTP(S)_PROXY, and
 * the harness points Node's fetch and http(s) at it on their first use. A job that ignores the
 * environment reaches nothing else (there is no route), and one that talks to the socket directly
 * meets the same checks: the policy lives here, on the host, not in the job's process.
 *
 * What arrives, by how the client speaks:
 *   - a plain-HTTP request in absolute form (`GET http://host/path`), or a CONNECT to port 80 (how
 *     Node's fetch reaches an http: URL through a proxy): each request goes through `egressFetch`,
 *     the edge gateway's own logic, so checks, redirects hop by hop, request and byte budgets are
 *     the same as for edge jobs;
 *   - a CONNECT to port 443 (https: URLs): the host name and port are checked like a URL, and the
 *     TLS ClientHello that opens the tunnel must name the same host (client-hello.ts: else a job
 *     could reach any site sharing a server with an allowed one), and so must a second one after a
 *     HelloRetryRequest (hello-retry.ts); the tunnel counts as one request,
 *     and its bytes (TLS records, both ways) count against `maxBytes`; what travels inside is
 *     encrypted, so requests within one tunnel and their redirects are not seen.
 *
 * Refusals are recorded in the job's meter (that is what fails the job with SANDBOX_NETWORK_BLOCKED)
 * and answered with a 403 carrying EGRESS_REFUSAL_HEADER; a refused CONNECT makes the job's fetch
 * reject. Without a policy every attempt is refused as `network_disabled`, naming the host.
 */
import { chmodSync, chownSync, rmSync } from "node:fs";
import { STATUS_CODES, createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { Readable } from "node:stream";
import type { Socket } from "node:net";
import { egressFetch, refusalResponse, type Upstream } from "../../src/egress/fetch.ts";
import { EgressMeter, type EgressRefusal, type EgressReport } from "../../src/egress/meter.ts";
import { checkUrl, type EgressPolicy } from "../../src/egress/policy.ts";
import { MAX_NAME_CHARS } from "../../src/untrusted-output.ts";
import { clientHelloName, type ClientHelloName } from "./client-hello.ts";
import { ServerAnswers } from "./hello-retry.ts";
import { AddressRefused } from "./egress-routes.ts";

/** How the proxy reaches the outside once a request has passed every check. */
export interface EgressRoutes {
  /** Sends one plain-HTTP request (no redirects followed: egressFetch does that, checking each hop). */
  upstream: Upstream;
  /** Opens the TCP connection a CONNECT tunnel to host:port is carried on. */
  tunnel(host: string, port: number): Promise<Socket>;
}

export interface EgressProxyOptions {
  socketPath: string;
  executionId: string;
  /** null: the job has no network. */
  policy: EgressPolicy | null;
  routes: EgressRoutes;
  /** The socket's owner: the uid the sandbox runs as, when the host is root. */
  owner: { uid: number; gid: number } | undefined;
}

/**
 * Connections one job may hold open to its proxy at once (each tunnel also holds one upstream). The
 * job's descriptor limit bounds its own side only; without this a job could make the host hold
 * thousands of sockets and run the host, and every other job on it, out of descriptors.
 */
export const MAX_CONNECTIONS_PER_JOB = 32;

/**
 * A CONNECT target: a DNS name or a bracketed IPv6 address, a colon, a port, and nothing else (no
 * path, query or fragment a URL parser would read differently from the port taken here).
 */
const CONNECT_TARGET = /^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):(\d{1,5})$/;

/** Response headers that describe the upstream's encoding of the body, not the body Node's fetch decoded. */
const DECODED_BODY_HEADERS = new Set(["content-encoding", "content-length", "transfer-encoding", "connection"]);
/** Request headers meant for the proxy, never forwarded. */
const PROXY_HEADERS = new Set(["proxy-connection", "proxy-authorization", "connection", "keep-alive"]);

export class EgressProxy {
  readonly #meter: EgressMeter;
  readonly #policy: EgressPolicy | null;
  readonly #routes: EgressRoutes;
  readonly #server: Server;
  readonly #socketPath: string;
  readonly #open = new Set<Duplex>();
  #closed: Promise<void> | undefined;
  #connecting = 0;

  private constructor(options: EgressProxyOptions) {
    this.#meter = new EgressMeter(options.executionId);
    this.#policy = options.policy;
    this.#routes = options.routes;
    this.#socketPath = options.socketPath;
    this.#server = createServer((request, response) => void this.#serveAbsolute(request, response));
    this.#server.on("connect", (request: IncomingMessage, socket: Duplex, head: Buffer) => {
      void this.#serveConnect(request, socket, head);
    });
    this.#server.maxConnections = MAX_CONNECTIONS_PER_JOB;
    this.#server.on("connection", (socket: Duplex) => this.#track(socket));
    // A malformed request from the job is its own business: close it, never throw.
    this.#server.on("clientError", (_error, socket: Duplex) => socket.destroy());
  }

  /** Listens on the socket path (replacing a stale file) before the job can start. */
  static async open(options: EgressProxyOptions): Promise<EgressProxy> {
    const proxy = new EgressProxy(options);
    rmSync(options.socketPath, { force: true });
    await new Promise<void>((resolve, reject) => {
      proxy.#server.once("error", reject);
      proxy.#server.listen(options.socketPath, () => resolve());
    });
    if (options.owner) chownSync(options.socketPath, options.owner.uid, options.owner.gid);
    chmodSync(options.socketPath, 0o600);
    return proxy;
  }

  report(): EgressReport {
    return this.#meter.report();
  }

  /** Ends the job's network: requests in flight are aborted, tunnels cut, the socket removed. */
  close(): Promise<void> {
    return (this.#closed ??= this.#shutdown());
  }

  async #shutdown(): Promise<void> {
    this.#meter.close();
    for (const socket of this.#open) socket.destroy();
    await new Promise((resolve) => this.#server.close(resolve));
    rmSync(this.#socketPath, { force: true });
  }

  #track(socket: Duplex): void {
    this.#open.add(socket);
    socket.once("close", () => this.#open.delete(socket));
    // The job may reset a connection at any time; that is not the host's error.
    socket.on("error", () => socket.destroy());
  }

  #refuse(refusal: EgressRefusal): Response {
    this.#meter.refuse(refusal);
    return refusalResponse(refusal);
  }

  /** The job's refusal when it has no network at all, naming what it tried to reach. */
  #disabled(host: string): Response {
    return this.#refuse({
      rule: "network_disabled",
      host,
      message: `network access is disabled for this job; it tried to reach ${host}`,
    });
  }

  async #serveAbsolute(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const target = request.url ?? "";
    if (!/^https?:\/\//i.test(target)) {
      return writeResponse(response, new Response("an HTTP proxy: requests must be in absolute form", { status: 400 }));
    }
    await this.#forward(request, response, target);
  }

  /** One plain-HTTP request of the job, through egressFetch. */
  async #forward(request: IncomingMessage, response: ServerResponse, target: string): Promise<void> {
    if (this.#policy === null) return writeResponse(response, this.#disabled(hostOf(target)));
    const headers = new Headers();
    for (const [name, value] of Object.entries(request.headers)) {
      if (value === undefined || PROXY_HEADERS.has(name)) continue;
      for (const item of Array.isArray(value) ? value : [value]) headers.append(name, item);
    }
    const method = request.method ?? "GET";
    const hasBody = method !== "GET" && method !== "HEAD";
    const init = {
      method,
      headers,
      body: hasBody ? (Readable.toWeb(request) as ReadableStream<Uint8Array>) : null,
      duplex: "half",
    };
    let answer: Response;
    try {
      answer = await egressFetch(new Request(target, init as RequestInit), {
        policy: this.#policy,
        meter: this.#meter,
        upstream: this.#routes.upstream,
      });
    } catch (error) {
      answer =
        error instanceof AddressRefused
          ? this.#refuse({ rule: error.rule, host: error.host, message: error.message })
          : new Response(`the upstream request failed: ${describe(error)}`, { status: 502 });
    }
    await writeResponse(response, answer);
  }

  async #serveConnect(request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    this.#track(socket);
    const authority = request.url ?? "";
    const refuseTunnel = (refusal: Response) => void writeRaw(socket, refusal);
    const target = CONNECT_TARGET.exec(authority);
    if (!target) {
      const shown = authority.slice(0, MAX_NAME_CHARS);
      const message = `"${shown}" is not a CONNECT target (host:port)`;
      return refuseTunnel(this.#refuse({ rule: "invalid_url", host: shown, message }));
    }
    const [, host = "", portText = ""] = target;
    const port = Number(portText);
    if (this.#policy === null) return refuseTunnel(this.#disabled(host));
    // The tunnel's destination is checked as the URL the job is about to use; host and port come
    // from one strict parse, so the check and the connection cannot read the target differently.
    const verdict = checkUrl(`${port === 443 ? "https" : "http"}://${host}:${port}/`, this.#policy);
    if (!verdict.ok)
      return refuseTunnel(this.#refuse({ rule: verdict.rule, host: verdict.host, message: verdict.message }));
    if (port === 80) return this.#serveTunnelledHttp(socket, verdict.host, head);
    await this.#openTunnel(socket, verdict.host, port, head);
  }

  /**
   * A CONNECT to port 80 (how Node's fetch sends an http: URL through a proxy): plain HTTP inside,
   * served request by request through egressFetch, for the tunnel's host only.
   */
  #serveTunnelledHttp(socket: Duplex, host: string, head: Buffer): void {
    const server = createServer((inner, response) => {
      const path = inner.url ?? "/";
      // An absolute-form target inside the tunnel would name another host than the one checked.
      if (!path.startsWith("/")) {
        return void writeResponse(response, new Response("requests in a tunnel use origin form", { status: 400 }));
      }
      void this.#forward(inner, response, `http://${host}${path}`);
    });
    server.on("clientError", (_error, client: Duplex) => client.destroy());
    socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
    if (head.length > 0) socket.unshift(head);
    server.emit("connection", socket);
  }

  /** A CONNECT to port 443: one request, its bytes both ways metered and cut at the budget. */
  async #openTunnel(socket: Duplex, host: string, port: number, head: Buffer): Promise<void> {
    const policy = this.#policy;
    if (!policy) return;
    const meter = this.#meter;
    if (meter.closed) {
      return void writeRaw(socket, this.#refuse({ rule: "job_not_running", host, message: "the job has ended" }));
    }
    if (meter.requests + this.#connecting >= policy.maxRequests) {
      const message = `the job's request budget of ${policy.maxRequests} is used up`;
      return void writeRaw(socket, this.#refuse({ rule: "request_budget", host, message }));
    }
    let upstream: Socket;
    // Tunnels still connecting hold their place in the request budget (they are counted once connected).
    this.#connecting++;
    try {
      upstream = await this.#routes.tunnel(host, port);
    } catch (error) {
      if (error instanceof AddressRefused) {
        return void writeRaw(socket, this.#refuse({ rule: error.rule, host: error.host, message: error.message }));
      }
      return void writeRaw(socket, new Response(`could not reach ${host}: ${describe(error)}`, { status: 502 }));
    } finally {
      this.#connecting--;
    }
    // Counted once it reaches its upstream, as a request the gateway sends.
    meter.countRequest();
    this.#track(upstream);
    if (socket.destroyed) return void upstream.destroy();
    socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
    let cut = false;
    let checked = false;
    /** `resumable`: whether `from` may flow again once `to` drains (the job's bytes wait for the checks). */
    const carrier =
      (from: Duplex, to: Duplex, direction: "sent" | "received", resumable = () => true) =>
      (chunk: Buffer) => {
        if (cut) return;
        const room = policy.maxBytes - meter.bytes;
        const fits = chunk.subarray(0, Math.max(0, room));
        meter.countBytes(direction, fits.length);
        // A side that does not read holds the other back: the host never buffers for it.
        if (fits.length > 0 && !to.write(fits)) {
          from.pause();
          to.once("drain", () => {
            if (resumable()) from.resume();
          });
        }
        if (fits.length < chunk.length) {
          cut = true;
          this.#meter.refuse({
            rule: "byte_budget",
            host,
            message: `the job's byte budget of ${policy.maxBytes} bytes is used up`,
          });
          to.end(() => to.destroy());
          from.destroy();
        }
      };
    const send = carrier(socket, upstream, "sent", () => checked);
    const receive = carrier(upstream, socket, "received");
    const answers = new ServerAnswers();
    upstream.on("data", (chunk: Buffer) => {
      answers.feed(chunk);
      receive(chunk);
    });
    upstream.once("end", () => socket.end());
    upstream.once("close", () => {
      answers.close();
      socket.destroy();
    });
    socket.once("close", () => upstream.destroy());
    const rest = await this.#checkHellos(socket, host, head, send, answers);
    if (rest === null) {
      socket.destroy();
      return void upstream.destroy();
    }
    checked = true;
    send(rest);
    socket.on("data", send);
    socket.once("end", () => upstream.end());
    socket.resume();
  }

  /**
   * Reads the job's ClientHello, and after a HelloRetryRequest its second one, forwarding each once
   * it names the tunnel's host. Resolves with the job's bytes read past them (not yet forwarded), or
   * null once the tunnel is refused or closed.
   */
  async #checkHellos(
    socket: Duplex,
    host: string,
    head: Buffer,
    send: (bytes: Buffer) => void,
    answers: ServerAnswers,
  ): Promise<Buffer | null> {
    const refuse = (why: string) => {
      this.#meter.refuse({
        rule: "tls_server_name",
        host,
        message: `the TLS handshake in the tunnel to ${host} does not name ${host}: ${why}`,
      });
      return null;
    };
    let pending = head;
    // A client answers one HelloRetryRequest at most (RFC 8446 §4.1.4).
    for (const afterRetry of [false, true]) {
      const hello = await nextClientHello(socket, pending, afterRetry);
      if (hello === null) return null;
      if (hello.name.kind === "refused") return refuse(hello.name.reason);
      if (hello.name.name !== host) return refuse(`it names ${hello.name.name}`);
      send(hello.bytes.subarray(0, hello.name.end));
      pending = hello.bytes.subarray(hello.name.end);
      const answer = await answers.next();
      if (answer.kind === "closed") return null;
      if (answer.kind === "refused") return refuse(answer.reason);
      if (answer.kind === "other") return pending;
    }
    return refuse("the server asked for a second retry");
  }
}

type ReadName = Exclude<ClientHelloName, { kind: "incomplete" }>;

/**
 * The job's next bytes in a 443 tunnel, from `pending` (read already) up to the end of its next
 * ClientHello (or up to what shows it is none), and the server name read from them; null if the job
 * closes the tunnel first. The socket is left paused, the bytes not yet forwarded.
 */
function nextClientHello(
  socket: Duplex,
  pending: Buffer,
  afterRetry: boolean,
): Promise<{ bytes: Buffer; name: ReadName } | null> {
  return new Promise((resolve) => {
    let bytes = pending;
    let settled = false;
    const settle = (outcome: { bytes: Buffer; name: ReadName } | null) => {
      settled = true;
      socket.pause();
      socket.off("data", gather);
      socket.off("close", closed);
      resolve(outcome);
    };
    const read = () => {
      const name = clientHelloName(bytes, afterRetry);
      if (name.kind !== "incomplete") settle({ bytes, name });
    };
    const gather = (chunk: Buffer) => {
      bytes = Buffer.concat([bytes, chunk]);
      read();
    };
    const closed = () => settle(null);
    socket.on("data", gather);
    socket.once("close", closed);
    if (bytes.length > 0) read();
    // Paused by the previous read, if any: a listener alone does not resume it.
    if (!settled) socket.resume();
  });
}

function hostOf(target: string): string {
  try {
    return new URL(target).hostname;
  } catch {
    return "";
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

async function writeResponse(response: ServerResponse, answer: Response): Promise<void> {
  const headers: Record<string, string | string[]> = {};
  answer.headers.forEach((value, name) => {
    if (!DECODED_BODY_HEADERS.has(name) && name !== "set-cookie") headers[name] = value;
  });
  const cookies = answer.headers.getSetCookie();
  if (cookies.length > 0) headers["set-cookie"] = cookies;
  response.writeHead(answer.status, answer.statusText || STATUS_CODES[answer.status], headers);
  if (!answer.body) return void response.end();
  try {
    for await (const chunk of answer.body) {
      if (!response.write(chunk)) await new Promise((resolve) => response.once("drain", resolve));
    }
    response.end();
  } catch {
    // The body was cut (the byte budget, or the job ended): the client sees a truncated response.
    response.destroy();
  }
}

/** A response written as raw HTTP/1.1 on a socket that never became an HTTP exchange (a refused CONNECT). */
async function writeRaw(socket: Duplex, answer: Response): Promise<void> {
  const body = Buffer.from(await answer.arrayBuffer());
  const lines = [`HTTP/1.1 ${answer.status} ${answer.statusText || STATUS_CODES[answer.status] || ""}`];
  answer.headers.forEach((value, name) => {
    if (!DECODED_BODY_HEADERS.has(name)) lines.push(`${name}: ${value}`);
  });
  lines.push(`content-length: ${body.length}`, "connection: close");
  socket.end(Buffer.concat([Buffer.from(`${lines.join("\r\n")}\r\n\r\n`), body]));
}
