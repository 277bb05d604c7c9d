/**
 * Where the egress proxy sends what it has let through (see egress-proxy.ts for the checks).
 *
 * `publicRoutes`: the real network, from the host. Names are resolved here, and every address a
 * name resolves to is judged by the same rules as an IP literal in a URL (private, loopback,
 * link-local, metadata…): a listed name that points into the host's network is refused, and the
 * connection goes to the address that was checked, so a second lookup cannot change it.
 *
 * `cannedRoutes`: the tests' stand-in for the internet (test/egress/upstream/index.js), the same one
 * the edge runner gets. It replaces the transport only: every check has run before a route is used.
 */
import { lookup } from "node:dns/promises";
import {
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type ServerResponse,
} from "node:http";
import { createServer as createHttpsServer, request as httpsRequest } from "node:https";
import { connect, type LookupFunction, type Server, type Socket } from "node:net";
import { Readable } from "node:stream";
import { pathToFileURL } from "node:url";
import type { Upstream } from "../../src/egress/fetch.ts";
import { classifyHost, type EgressRule } from "../../src/egress/policy.ts";
import type { EgressRoutes } from "./egress-proxy.ts";

const NULL_BODY_STATUSES = new Set([204, 205, 304]);

/** A listed name that resolves into a refused range: the proxy records it as the job's refusal. */
export class AddressRefused extends Error {
  readonly rule: EgressRule;
  readonly host: string;

  constructor(rule: EgressRule, host: string, message: string) {
    super(message);
    this.rule = rule;
    this.host = host;
  }
}

/** The first address of `host`; throws AddressRefused if any of its addresses is in a refused range. */
export async function publicAddress(host: string): Promise<{ address: string; family: number }> {
  const addresses = await lookup(host, { all: true, verbatim: true });
  for (const { address, family } of addresses) {
    // Every address is an IP literal to classifyHost; only the special ranges are refused here.
    const refusal = classifyHost(family === 6 ? `[${address}]` : address);
    if (refusal && refusal.rule !== "ip_literal") {
      throw new AddressRefused(refusal.rule, host, `${host} resolves to ${address}: ${refusal.message}`);
    }
  }
  const first = addresses[0];
  if (!first) throw new Error(`${host} does not resolve`);
  return first;
}

const checkedLookup: LookupFunction = (hostname, options, callback) => {
  publicAddress(hostname).then(
    ({ address, family }) => {
      if (options.all) callback(null, [{ address, family }]);
      else callback(null, address, family);
    },
    (error: NodeJS.ErrnoException) => callback(error, "", 0),
  );
};

export function publicRoutes(): EgressRoutes {
  return {
    upstream: (request) => sendWithNode(request),
    async tunnel(host, port) {
      const { address } = await publicAddress(host);
      return connected(connect({ host: address, port }));
    },
  };
}

/** One request with Node's http(s) client, so the address comes from `checkedLookup`. */
function sendWithNode(request: Request): Promise<Response> {
  const url = new URL(request.url);
  const send = url.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const outgoing = send(
      url,
      {
        method: request.method,
        headers: Object.fromEntries(request.headers),
        lookup: checkedLookup,
        signal: request.signal,
      },
      (incoming) => {
        const status = incoming.statusCode ?? 502;
        const body = NULL_BODY_STATUSES.has(status) || request.method === "HEAD" ? null : Readable.toWeb(incoming);
        if (body === null) incoming.resume();
        resolve(
          new Response(body as ReadableStream<Uint8Array> | null, {
            status,
            statusText: incoming.statusMessage ?? "",
            headers: toHeaders(incoming.headers),
          }),
        );
      },
    );
    outgoing.on("error", reject);
    if (request.body) Readable.fromWeb(request.body as import("node:stream/web").ReadableStream).pipe(outgoing);
    else outgoing.end();
  });
}

function toHeaders(incoming: IncomingHttpHeaders): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(incoming)) {
    if (value === undefined) continue;
    for (const item of Array.isArray(value) ? value : [value]) headers.append(name, item);
  }
  return headers;
}

function connected(socket: Socket): Promise<Socket> {
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("error", reject);
  });
}

/**
 * Routes to a module whose default export has `fetch(request)` (a Worker script without bindings):
 * plain-HTTP requests call it in process, tunnels reach it through a loopback HTTP server started on
 * first use; with `tls` (a test certificate), tunnels to port 443 reach an HTTPS server instead, as
 * they would on the internet (`ecdhCurve`: the key exchange groups it takes; one a client sends no
 * key share for makes it ask for a retry). `close` stops the servers.
 */
export async function cannedRoutes(
  scriptPath: string,
  tls?: { key: string; cert: string; ecdhCurve?: string },
): Promise<EgressRoutes & { close(): Promise<void> }> {
  const module = (await import(pathToFileURL(scriptPath).href)) as { default: { fetch: Upstream } };
  const serve = module.default.fetch;
  const handle = (incoming: IncomingMessage, outgoing: ServerResponse) => {
    const hasBody = incoming.method !== "GET" && incoming.method !== "HEAD";
    const init = {
      method: incoming.method,
      headers: toHeaders(incoming.headers),
      body: hasBody ? Readable.toWeb(incoming) : null,
      duplex: "half",
    };
    void serve(new Request(`http://${incoming.headers.host ?? "upstream"}${incoming.url}`, init as RequestInit))
      .then(async (answer) => {
        outgoing.writeHead(answer.status, Object.fromEntries(answer.headers));
        outgoing.end(Buffer.from(await answer.arrayBuffer()));
      })
      .catch(() => outgoing.destroy());
  };
  const plain = lazyServer(() => createServer(handle));
  const secure = tls ? lazyServer(() => createHttpsServer(tls, handle)) : plain;
  return {
    upstream: (request) => serve(request),
    tunnel: async (_host, port) =>
      connected(connect({ host: "127.0.0.1", port: await (port === 443 ? secure : plain).port() })),
    async close() {
      await plain.close();
      if (secure !== plain) await secure.close();
    },
  };
}

/** A loopback server started on first use. */
function lazyServer(create: () => Server) {
  let server: Server | undefined;
  let port: Promise<number> | undefined;
  return {
    port: () =>
      (port ??= new Promise((resolve) => {
        const started = (server = create());
        started.listen(0, "127.0.0.1", () => {
          const address = started.address();
          resolve(typeof address === "object" && address ? address.port : 0);
        });
      })),
    close: () => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())),
  };
}
