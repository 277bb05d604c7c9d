/**
 * The node jobs' egress proxy on its own, spoken to the way the sandbox reaches it: over its Unix
 * socket. What goes through is sent to the tests' stand-in for the internet (cannedRoutes), so the
 * checks run on real-looking host names while the bytes come from test/egress/upstream/index.js. The
 * rules themselves are the edge gateway's (test/egress/*); these tests are about the proxy: absolute
 * form, CONNECT tunnels to port 80 and 443, their metering and cut-off, and the end of the job.
 */
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { request as httpRequest, type IncomingMessage } from "node:http";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { EgressPolicy } from "../../src/egress/policy.ts";
import { EGRESS_REFUSAL_HEADER } from "../../src/egress/fetch.ts";
import { EgressProxy, MAX_CONNECTIONS_PER_JOB, type EgressRoutes } from "../node/egress-proxy.ts";
import { AddressRefused, cannedRoutes, publicAddress } from "../node/egress-routes.ts";
import { serverAnswer } from "../node/hello-retry.ts";
import { realClientHello, TEST_TLS as TLS } from "./tls-helpers.ts";

const UPSTREAM = fileURLToPath(new URL("../../test/egress/upstream/index.js", import.meta.url));
const policy: EgressPolicy = {
  allowedDomains: ["api.example.com"],
  blockedDomains: [],
  maxRequests: 5,
  maxBytes: 10_000,
};

let routes: Awaited<ReturnType<typeof cannedRoutes>>;
let dir: string;
const proxies: EgressProxy[] = [];

beforeAll(async () => {
  routes = await cannedRoutes(UPSTREAM, TLS);
  dir = mkdtempSync(join(tmpdir(), "cordon-egress-test-"));
});

afterEach(async () => {
  await Promise.all(proxies.splice(0).map((proxy) => proxy.close()));
});

afterAll(async () => {
  await routes.close();
  rmSync(dir, { recursive: true, force: true });
});

let socketCount = 0;
async function open(
  withPolicy: EgressPolicy | null = policy,
  through: EgressRoutes = routes,
): Promise<{ proxy: EgressProxy; socketPath: string }> {
  const socketPath = join(dir, `egress-${socketCount++}.sock`);
  const proxy = await EgressProxy.open({
    socketPath,
    executionId: "job",
    policy: withPolicy,
    routes: through,
    owner: undefined,
  });
  proxies.push(proxy);
  return { proxy, socketPath };
}

interface Answer {
  status: number;
  headers: IncomingMessage["headers"];
  body: string;
}

/** One absolute-form request through the proxy's socket (how an HTTP client speaks to a proxy). */
function viaProxy(socketPath: string, url: string, init: { method?: string; body?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const outgoing = httpRequest({ socketPath, path: url, method: init.method ?? "GET" }, (incoming) => {
      let body = "";
      incoming.setEncoding("utf8");
      incoming.on("data", (chunk: string) => (body += chunk));
      incoming.on("end", () => resolve({ status: incoming.statusCode ?? 0, headers: incoming.headers, body }));
      incoming.on("error", () => resolve({ status: incoming.statusCode ?? 0, headers: incoming.headers, body }));
    });
    outgoing.on("error", reject);
    outgoing.end(init.body);
  });
}

/** Opens a CONNECT tunnel; resolves with the proxy's answer and, when it said 200, the tunnel. */
function tunnel(socketPath: string, authority: string): Promise<{ status: number; socket?: Socket; body: string }> {
  return new Promise((resolve, reject) => {
    const outgoing = httpRequest({ socketPath, method: "CONNECT", path: authority });
    outgoing.on("connect", (incoming: IncomingMessage, socket: Socket) => {
      resolve({ status: incoming.statusCode ?? 0, socket, body: "" });
    });
    // A refused CONNECT is an ordinary response to Node's client.
    outgoing.on("response", (incoming: IncomingMessage) => {
      let body = "";
      incoming.on("data", (chunk: Buffer) => (body += chunk.toString()));
      incoming.on("end", () => resolve({ status: incoming.statusCode ?? 0, body }));
    });
    outgoing.on("error", reject);
    outgoing.end();
  });
}

/** TLS inside an open tunnel, asking for `servername` (SNI) and trusting the canned certificate. */
function overTls(socket: Socket, servername = "api.example.com"): TLSSocket {
  return tlsConnect({ socket, servername, ca: TLS.cert });
}

/** The bytes a tunnel's socket has carried since `mark` was taken (what the proxy should meter). */
function carried(socket: Socket, mark: { written: number; read: number }) {
  return { sent: socket.bytesWritten - mark.written, received: socket.bytesRead - mark.read };
}

/** Writes raw bytes into a tunnel and collects everything until the far end closes it. */
function exchange(socket: Socket, text: string): Promise<string> {
  return new Promise((resolve) => {
    let received = "";
    socket.on("data", (chunk: Buffer) => (received += chunk.toString()));
    socket.on("close", () => resolve(received));
    socket.on("error", () => undefined);
    socket.write(text);
  });
}

const rawGet = (path: string, host = "api.example.com") =>
  `GET ${path} HTTP/1.1\r\nhost: ${host}\r\nconnection: close\r\n\r\n`;

describe("plain HTTP in absolute form", () => {
  it("answers an allowed host through the upstream and counts the request and body bytes", async () => {
    const { proxy, socketPath } = await open();
    const answer = await viaProxy(socketPath, "http://api.example.com/hello");
    expect(answer).toMatchObject({ status: 200, body: "hello from api.example.com" });
    expect(proxy.report()).toMatchObject({ requests: 1, bytesSent: 0, bytesReceived: 26, refusedCount: 0 });
  });

  it("forwards a request body", async () => {
    const { proxy, socketPath } = await open();
    const answer = await viaProxy(socketPath, "http://api.example.com/echo", { method: "POST", body: "payload" });
    expect(JSON.parse(answer.body)).toMatchObject({ method: "POST", body: "payload" });
    expect(proxy.report().bytesSent).toBe(7);
  });

  it("refuses an unlisted host with the marker header and records it", async () => {
    const { proxy, socketPath } = await open();
    const answer = await viaProxy(socketPath, "http://evil.example.net/");
    expect(answer.status).toBe(403);
    expect(answer.headers[EGRESS_REFUSAL_HEADER]).toBe("not_allowlisted");
    expect(proxy.report()).toMatchObject({
      requests: 0,
      refusals: [{ rule: "not_allowlisted", host: "evil.example.net" }],
    });
  });

  it("keeps a refused host and its message short, however long the job made them", async () => {
    const { proxy, socketPath } = await open();
    const host = `${"a".repeat(60)}.`.repeat(150) + "com";
    expect((await viaProxy(socketPath, `http://${host}/`)).status).toBe(403);
    const [refusal] = proxy.report().refusals;
    expect(refusal?.host).toBe(host.slice(0, 256));
    expect(refusal?.message.length).toBeLessThanOrEqual(1024);
  });

  it("refuses origin-form requests: it is a proxy, not a server", async () => {
    const { proxy, socketPath } = await open();
    const answer = await viaProxy(socketPath, "/hello");
    expect(answer.status).toBe(400);
    expect(proxy.report().requests).toBe(0);
  });

  it("refuses everything, naming the host, when the job has no network", async () => {
    const { proxy, socketPath } = await open(null);
    expect((await viaProxy(socketPath, "http://api.example.com/hello")).status).toBe(403);
    expect((await tunnel(socketPath, "api.example.com:443")).status).toBe(403);
    expect(proxy.report()).toMatchObject({
      requests: 0,
      refusedCount: 2,
      refusals: [
        { rule: "network_disabled", host: "api.example.com" },
        { rule: "network_disabled", host: "api.example.com" },
      ],
    });
  });
});

describe("CONNECT tunnels", () => {
  it("serves plain HTTP inside a tunnel to port 80 request by request, for the tunnel's host only", async () => {
    const { proxy, socketPath } = await open();
    const opened = await tunnel(socketPath, "api.example.com:80");
    expect(opened.status).toBe(200);
    // The Host header names another site: the tunnel's host is what was checked, and what is used.
    const received = await exchange(opened.socket!, rawGet("/hello", "evil.example.net"));
    expect(received).toMatch(/^HTTP\/1\.1 200/);
    expect(received).toContain("hello from api.example.com");
    expect(proxy.report()).toMatchObject({ requests: 1, bytesReceived: 26, refusedCount: 0 });
  });

  it("refuses an absolute-form target inside a port-80 tunnel (it would name another host)", async () => {
    const { proxy, socketPath } = await open();
    const opened = await tunnel(socketPath, "api.example.com:80");
    const received = await exchange(opened.socket!, rawGet("http://evil.example.net/hello"));
    expect(received).toMatch(/^HTTP\/1\.1 400/);
    expect(proxy.report().requests).toBe(0);
  });

  it("refuses a tunnel to an unlisted host, an IP or another port before connecting anywhere", async () => {
    const { proxy, socketPath } = await open();
    for (const authority of ["evil.example.net:443", "10.0.0.1:443", "api.example.com:22"]) {
      expect((await tunnel(socketPath, authority)).status).toBe(403);
    }
    expect(proxy.report().refusals.map((refusal) => refusal.rule)).toEqual([
      "not_allowlisted",
      "private_address",
      "port_not_allowed",
    ]);
    expect(proxy.report().requests).toBe(0);
  });

  it("counts a tunnel to port 443 as one request and its bytes both ways", async () => {
    const { proxy, socketPath } = await open();
    const opened = await tunnel(socketPath, "api.example.com:443");
    expect(opened.status).toBe(200);
    const mark = { written: opened.socket!.bytesWritten, read: opened.socket!.bytesRead };
    const received = await exchange(overTls(opened.socket!), rawGet("/hello"));
    expect(received).toContain("hello from api.example.com");
    const { sent, received: read } = carried(opened.socket!, mark);
    expect(proxy.report()).toMatchObject({ requests: 1, bytesReceived: read, refusedCount: 0 });
    // All the client sent, but for its closing alert (one small record), written once the upstream had closed.
    expect(sent - proxy.report().bytesSent).toBeGreaterThanOrEqual(0);
    expect(sent - proxy.report().bytesSent).toBeLessThan(64);
  });

  it("cuts a tunnel exactly at the byte budget and records the refusal", async () => {
    const { proxy, socketPath } = await open({ ...policy, maxBytes: 4_000 });
    const opened = await tunnel(socketPath, "api.example.com:443");
    const received = await exchange(overTls(opened.socket!), rawGet("/bytes?n=50000"));
    expect(received.length).toBeLessThan(4_000);
    expect(proxy.report().refusals).toEqual([expect.objectContaining({ rule: "byte_budget" })]);
    expect(proxy.report().bytesSent + proxy.report().bytesReceived).toBe(4_000);
  });

  it("refuses a tunnel whose TLS handshake names another server than the one it was opened to", async () => {
    const { proxy, socketPath } = await open();
    const opened = await tunnel(socketPath, "api.example.com:443");
    expect(opened.status).toBe(200);
    // A server shared with an allowed host would otherwise answer for evil.example.net.
    const fronted = overTls(opened.socket!, "evil.example.net");
    await expect(
      new Promise((resolve, reject) => fronted.once("secureConnect", resolve).once("error", reject)),
    ).rejects.toThrow();
    expect(proxy.report()).toMatchObject({
      bytesSent: 0,
      refusals: [{ rule: "tls_server_name", host: "api.example.com" }],
    });
    expect(proxy.report().refusals[0]?.message).toContain("it names evil.example.net");
  });

  describe("when the server asks for a retry (HelloRetryRequest)", () => {
    // This server takes only P-384, for which Node's client sends no key share in its first hello.
    let retrying: Awaited<ReturnType<typeof cannedRoutes>>;
    beforeAll(async () => (retrying = await cannedRoutes(UPSTREAM, { ...TLS, ecdhCurve: "P-384" })));
    afterAll(() => retrying.close());

    it("carries the handshake, the second ClientHello naming the tunnel's host too", async () => {
      const { proxy, socketPath } = await open(policy, retrying);
      const opened = await tunnel(socketPath, "api.example.com:443");
      expect(await exchange(overTls(opened.socket!), rawGet("/hello"))).toContain("hello from api.example.com");
      expect(proxy.report()).toMatchObject({ requests: 1, refusedCount: 0 });
    });

    for (const when of ["after the retry", "sent at once with the first"]) {
      it(`refuses a second ClientHello naming another server, ${when}, and never forwards it`, async () => {
        const { proxy, socketPath } = await open(policy, retrying);
        const opened = await tunnel(socketPath, "api.example.com:443");
        const socket = opened.socket!;
        const first = await realClientHello("api.example.com");
        const changeCipherSpec = Buffer.from([20, 3, 3, 0, 1, 1]);
        const second = Buffer.concat([changeCipherSpec, await realClientHello("evil.example.net")]);
        let received = Buffer.alloc(0);
        socket.on("data", (chunk: Buffer) => (received = Buffer.concat([received, chunk])));
        const closed = new Promise((resolve) => socket.once("close", resolve));
        if (when === "after the retry") {
          socket.write(first);
          await new Promise((resolve) => socket.once("data", resolve));
          socket.write(second);
        } else {
          socket.write(Buffer.concat([first, second]));
        }
        await closed;
        expect(serverAnswer(received)).toMatchObject({ kind: "retry" });
        expect(proxy.report()).toMatchObject({
          bytesSent: first.length,
          refusals: [{ rule: "tls_server_name", host: "api.example.com" }],
        });
        expect(proxy.report().refusals[0]?.message).toContain("it names evil.example.net");
      });
    }
  });

  it("refuses a tunnel to port 443 that does not open with a TLS ClientHello", async () => {
    const { proxy, socketPath } = await open();
    const opened = await tunnel(socketPath, "api.example.com:443");
    expect(await exchange(opened.socket!, rawGet("/hello"))).toBe("");
    expect(proxy.report()).toMatchObject({ bytesSent: 0, refusals: [{ rule: "tls_server_name" }] });
  });

  it("refuses CONNECT targets that a URL parser reads as another port", async () => {
    const { proxy, socketPath } = await open();
    // ("#" never reaches the proxy: Node's HTTP parser refuses it in a request target.)
    const targets = [
      "api.example.com:443?:22",
      "api.example.com:443/:22",
      "api.example.com?:22",
      "api.example.com:443/x:25",
    ];
    for (const authority of targets) expect((await tunnel(socketPath, authority)).status).toBe(403);
    expect(proxy.report().refusals.map((refusal) => refusal.rule)).toEqual(targets.map(() => "invalid_url"));
    expect(proxy.report().requests).toBe(0);
  });

  it("refuses the tunnel past the request budget", async () => {
    const { proxy, socketPath } = await open({ ...policy, maxRequests: 1 });
    const first = await tunnel(socketPath, "api.example.com:443");
    expect(first.status).toBe(200);
    first.socket!.destroy();
    expect((await tunnel(socketPath, "api.example.com:443")).status).toBe(403);
    expect(proxy.report()).toMatchObject({ requests: 1, refusals: [{ rule: "request_budget" }] });
  });
});

describe("the host's resources", () => {
  it("holds a tunnel's upstream back while the job does not read, instead of buffering for it", async () => {
    const { proxy, socketPath } = await open({ ...policy, maxBytes: 100 * 1024 * 1024 });
    const opened = await tunnel(socketPath, "api.example.com:443");
    const secure = overTls(opened.socket!);
    await new Promise((resolve) => secure.once("secureConnect", resolve));
    secure.write(rawGet("/bytes?n=20000000"));
    secure.pause();
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    // Socket buffers on both sides hold a few MB at most; without backpressure it is the whole body.
    expect(proxy.report().bytesReceived).toBeLessThan(8 * 1024 * 1024);
    secure.destroy();
  });

  it(`holds at most ${MAX_CONNECTIONS_PER_JOB} connections of one job open at once`, async () => {
    const { socketPath } = await open({ ...policy, maxRequests: 100 });
    const tunnels = await Promise.all(
      Array.from({ length: MAX_CONNECTIONS_PER_JOB }, () => tunnel(socketPath, "api.example.com:443")),
    );
    expect(tunnels.every((opened) => opened.status === 200)).toBe(true);
    // One more is closed by the proxy without an answer.
    await expect(tunnel(socketPath, "api.example.com:443")).rejects.toThrow();
    for (const opened of tunnels) opened.socket?.destroy();
  });
});

describe("the end of the job", () => {
  it("cuts open tunnels, removes the socket and refuses nothing more afterwards", async () => {
    const { proxy, socketPath } = await open();
    const opened = await tunnel(socketPath, "api.example.com:443");
    const closed = new Promise((resolve) => opened.socket!.once("close", resolve));
    opened.socket!.on("error", () => undefined);
    expect(statSync(socketPath).mode & 0o777).toBe(0o600);
    await proxy.close();
    await closed;
    await expect(
      new Promise((resolve, reject) => connect(socketPath).once("connect", resolve).once("error", reject)),
    ).rejects.toMatchObject({ code: "ENOENT" });
  });
});

describe("names that resolve into refused ranges", () => {
  it("are refused by the public routes (a listed name cannot point into the host's network)", async () => {
    await expect(publicAddress("localhost")).rejects.toThrow(AddressRefused);
    await expect(publicAddress("localhost")).rejects.toMatchObject({ rule: "private_address", host: "localhost" });
  });

  it("fail the job as refusals, not as upstream errors, and are not counted as requests", async () => {
    const refusing: EgressRoutes = {
      upstream: async () => {
        throw new AddressRefused("private_address", "api.example.com", "api.example.com resolves to 10.0.0.7");
      },
      tunnel: async () => {
        throw new AddressRefused("private_address", "api.example.com", "api.example.com resolves to 10.0.0.7");
      },
    };
    const socketPath = join(dir, `egress-${socketCount++}.sock`);
    const proxy = await EgressProxy.open({
      socketPath,
      executionId: "job",
      policy,
      routes: refusing,
      owner: undefined,
    });
    proxies.push(proxy);
    expect((await tunnel(socketPath, "api.example.com:443")).status).toBe(403);
    expect((await viaProxy(socketPath, "http://api.example.com/hello")).status).toBe(403);
    expect(proxy.report().refusals).toEqual([
      expect.objectContaining({ rule: "private_address", host: "api.example.com" }),
      expect.objectContaining({ rule: "private_address", host: "api.example.com" }),
    ]);
    // The plain-HTTP request went through egressFetch, which counts a request as it sends it.
    expect(proxy.report().requests).toBe(1);
  });
});
