/**
 * Reading a TLS server's first answer: a HelloRetryRequest (after which the job's second ClientHello
 * must be checked too) or anything else. The answers are Node's own, captured between a real client
 * and a real server; a server that accepts only P-384 makes a client that sent no P-384 key share retry.
 */
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Server } from "node:net";
import { connect as tlsConnect, createServer as createTlsServer } from "node:tls";
import { describe, expect, it } from "vitest";
import { clientHelloName } from "../node/client-hello.ts";
import { serverAnswer, ServerAnswers } from "../node/hello-retry.ts";
import { TEST_TLS as TLS } from "./tls-helpers.ts";

/** A whole handshake between Node's TLS client and server, and the bytes each side sent. */
async function tappedHandshake(ecdhCurve?: string): Promise<{ fromClient: Buffer; fromServer: Buffer }> {
  const tls = createTlsServer({ ...TLS, ...(ecdhCurve ? { ecdhCurve } : {}) }, (socket) => socket.end());
  const tlsPort = await listen(tls);
  let fromClient = Buffer.alloc(0);
  let fromServer = Buffer.alloc(0);
  const tap = createNetServer((client) => {
    const server = netConnect(tlsPort, "127.0.0.1");
    client.on("data", (chunk: Buffer) => ((fromClient = Buffer.concat([fromClient, chunk])), server.write(chunk)));
    server.on("data", (chunk: Buffer) => ((fromServer = Buffer.concat([fromServer, chunk])), client.write(chunk)));
    client.on("close", () => server.destroy()).on("error", () => undefined);
    server.on("close", () => client.destroy()).on("error", () => undefined);
  });
  const client = tlsConnect({
    port: await listen(tap),
    host: "127.0.0.1",
    servername: "api.example.com",
    ca: TLS.cert,
  });
  await new Promise((resolve, reject) => client.once("secureConnect", resolve).once("error", reject));
  client.destroy();
  await Promise.all([close(tap), close(tls)]);
  return { fromClient, fromServer };
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port)));
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

describe("a server's first answer", () => {
  it("is a retry when the server wants a key share the client did not send; its next answer is not", async () => {
    const { fromClient, fromServer } = await tappedHandshake("P-384");
    const answer = serverAnswer(fromServer);
    expect(answer).toMatchObject({ kind: "retry" });
    const end = answer.kind === "retry" ? answer.end : 0;
    expect(serverAnswer(fromServer.subarray(end))).toEqual({ kind: "other" });
    // The client's second ClientHello, which the proxy reads as well.
    const first = clientHelloName(fromClient);
    const firstEnd = first.kind === "name" ? first.end : 0;
    expect(clientHelloName(fromClient.subarray(firstEnd), true)).toMatchObject({
      kind: "name",
      name: "api.example.com",
    });
  });

  it("is no retry when the server takes the first ClientHello", async () => {
    const { fromServer } = await tappedHandshake();
    expect(serverAnswer(fromServer)).toEqual({ kind: "other" });
  });

  it("waits for the rest of a retry, and takes alerts and bytes that are not TLS for no retry", async () => {
    const { fromServer } = await tappedHandshake("P-384");
    expect(serverAnswer(fromServer.subarray(0, 40))).toEqual({ kind: "incomplete" });
    const alert = Buffer.from([21, 3, 3, 0, 2, 2, 40]);
    expect(serverAnswer(alert)).toEqual({ kind: "other" });
    expect(serverAnswer(Buffer.from("HTTP/1.1 400 Bad Request\r\n\r\n"))).toEqual({ kind: "other" });
  });

  it("is refused when a retry shares its record with more (where the next answer starts is unclear)", async () => {
    const { fromServer } = await tappedHandshake("P-384");
    const answer = serverAnswer(fromServer);
    const retry = fromServer.subarray(5, answer.kind === "retry" ? answer.end : 0);
    const extra = Buffer.from([2, 0, 0, 0]);
    const length = retry.length + extra.length;
    const shared = Buffer.concat([Buffer.from([22, 3, 3, length >> 8, length & 0xff]), retry, extra]);
    expect(serverAnswer(shared)).toMatchObject({ kind: "refused" });
  });
});

describe("the server's answers in a tunnel", () => {
  it("are read across chunks, one per ClientHello, and end as closed when the server closes mid-answer", async () => {
    const { fromServer } = await tappedHandshake("P-384");
    const answers = new ServerAnswers();
    const first = answers.next();
    for (const byte of fromServer) answers.feed(Buffer.from([byte]));
    expect(await first).toMatchObject({ kind: "retry" });
    expect(await answers.next()).toEqual({ kind: "other" });

    const cut = new ServerAnswers();
    cut.feed(fromServer.subarray(0, 20));
    const pending = cut.next();
    cut.close();
    expect(await pending).toEqual({ kind: "closed" });
  });
});
