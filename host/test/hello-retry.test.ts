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

  it("waits for the rest of a retry, passing over alerts and change_cipher_spec before it", async () => {
    const { fromServer } = await tappedHandshake("P-384");
    expect(serverAnswer(fromServer.subarray(0, 40))).toEqual({ kind: "incomplete" });
    const warning = Buffer.from([21, 3, 3, 0, 2, 1, 112]);
    const changeCipherSpec = Buffer.from([20, 3, 3, 0, 1, 1]);
    const before = Buffer.concat([warning, changeCipherSpec]);
    expect(serverAnswer(Buffer.concat([before, fromServer]))).toMatchObject({ kind: "retry" });
    // A record passed over may arrive in pieces: its header alone is not yet anything else.
    expect(serverAnswer(warning.subarray(0, 5))).toEqual({ kind: "incomplete" });
    // After a fatal alert the server closes; there is no answer to read.
    expect(serverAnswer(Buffer.from([21, 3, 3, 0, 2, 2, 40]))).toEqual({ kind: "incomplete" });
  });

  it("is refused when it cannot be read as a ServerHello (a retry the proxy missed would let a hello through)", async () => {
    const { fromServer } = await tappedHandshake("P-384");
    const refused = { kind: "refused" };
    expect(serverAnswer(Buffer.from("HTTP/1.1 400 Bad Request\r\n\r\n"))).toMatchObject(refused);
    expect(serverAnswer(Buffer.concat([Buffer.from([22, 3, 3, 0, 0]), fromServer]))).toMatchObject(refused);
    // The retry in records of 8 bytes: more records than any server uses.
    const message = fromServer.subarray(5, 5 + fromServer.readUInt16BE(3));
    const pieces: Buffer[] = [];
    for (let at = 0; at < message.length; at += 8) {
      const piece = message.subarray(at, at + 8);
      pieces.push(Buffer.from([22, 3, 3, 0, piece.length]), piece);
    }
    expect(serverAnswer(Buffer.concat(pieces))).toMatchObject(refused);
    // A handshake message that is not a ServerHello (a HelloRequest).
    expect(serverAnswer(Buffer.from([22, 3, 3, 0, 4, 0, 0, 0, 0]))).toMatchObject(refused);
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
  it("are read across chunks, one per ClientHello; a flood before any is refused, a close mid-answer ends them", async () => {
    const { fromServer } = await tappedHandshake("P-384");
    const answers = new ServerAnswers();
    const first = answers.next();
    for (const byte of fromServer) answers.feed(Buffer.from([byte]));
    expect(await first).toMatchObject({ kind: "retry" });
    expect(await answers.next()).toEqual({ kind: "other" });

    const flooded = new ServerAnswers();
    // Warning alerts, each passed over: the hello never comes.
    const chunk = Buffer.concat(Array.from({ length: 9_000 }, () => Buffer.from([21, 3, 3, 0, 2, 1, 112])));
    for (let sent = 0; sent < 100; sent++) flooded.feed(chunk);
    expect(await flooded.next()).toMatchObject({ kind: "refused" });

    const cut = new ServerAnswers();
    cut.feed(fromServer.subarray(0, 20));
    const pending = cut.next();
    cut.close();
    expect(await pending).toEqual({ kind: "closed" });
  });
});
