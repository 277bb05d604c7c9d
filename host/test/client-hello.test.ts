/**
 * Reading the server name from a ClientHello: real ones, as Node's TLS client sends them, and the
 * shapes a job could send instead (split across records, hidden names, no name, not TLS at all).
 */
import { describe, expect, it } from "vitest";
import { clientHelloName, MAX_CLIENT_HELLO_BYTES } from "../node/client-hello.ts";
import { realClientHello } from "./tls-helpers.ts";

/** The same handshake message re-sent in TLS records of at most `size` bytes each. */
function inRecords(hello: Buffer, size: number): Buffer {
  const message = hello.subarray(5);
  const records: Buffer[] = [];
  for (let at = 0; at < message.length; at += size) {
    const fragment = message.subarray(at, at + size);
    records.push(Buffer.from([22, 3, 1, fragment.length >> 8, fragment.length & 0xff]), fragment);
  }
  return Buffer.concat(records);
}

/** A ClientHello in one record with `extension` (type, data) added after its own extensions. */
function withExtension(hello: Buffer, type: number, data: Buffer): Buffer {
  const body = hello.subarray(9);
  let at = 2 + 32;
  at += 1 + body[at]!;
  at += 2 + body.readUInt16BE(at);
  at += 1 + body[at]!;
  const extensions = Buffer.concat([
    body.subarray(at + 2),
    Buffer.from([type >> 8, type & 0xff, data.length >> 8, data.length & 0xff]),
    data,
  ]);
  const newBody = Buffer.concat([body.subarray(0, at), u16(extensions.length), extensions]);
  const handshake = Buffer.concat([Buffer.from([1, 0, newBody.length >> 8, newBody.length & 0xff]), newBody]);
  return Buffer.concat([Buffer.from([22, 3, 1]), u16(handshake.length), handshake]);
}

function u16(value: number): Buffer {
  return Buffer.from([value >> 8, value & 0xff]);
}

describe("the server name of a ClientHello", () => {
  it("is read from Node's own ClientHello, in the form hosts are compared", async () => {
    const hello = await realClientHello("api.example.com");
    expect(clientHelloName(hello)).toEqual({ kind: "name", name: "api.example.com", end: hello.length });
    expect(clientHelloName(await realClientHello("API.Example.COM"))).toMatchObject({
      kind: "name",
      name: "api.example.com",
    });
  });

  it("waits for the rest of a ClientHello that has not fully arrived", async () => {
    const hello = await realClientHello("api.example.com");
    for (const cut of [0, 3, 5, 9, hello.length - 1]) {
      expect(clientHelloName(hello.subarray(0, cut))).toEqual({ kind: "incomplete" });
    }
  });

  it("is read from a ClientHello split across several records", async () => {
    const split = inRecords(await realClientHello("api.example.com"), 600);
    expect(clientHelloName(split)).toEqual({ kind: "name", name: "api.example.com", end: split.length });
    expect(clientHelloName(split.subarray(0, 200))).toEqual({ kind: "incomplete" });
  });

  it("is refused when the ClientHello hides it (Encrypted Client Hello) or names none", async () => {
    const hello = await realClientHello("api.example.com");
    expect(clientHelloName(withExtension(hello, 0xfe0d, Buffer.alloc(40)))).toMatchObject({
      kind: "refused",
      reason: expect.stringContaining("hides"),
    });
    // Node sends no SNI for an IP address.
    expect(clientHelloName(await realClientHello(""))).toMatchObject({
      kind: "refused",
      reason: expect.stringContaining("no SNI"),
    });
  });

  it("is refused when the bytes are no ClientHello, or one no client would send", async () => {
    const hello = await realClientHello("api.example.com");
    const refused = { kind: "refused" };
    expect(clientHelloName(Buffer.from("GET / HTTP/1.1\r\n\r\n"))).toMatchObject(refused);
    // A second server_name extension, a server name that is not ASCII, a length past the end.
    const serverName = (name: Buffer) =>
      Buffer.concat([u16(name.length + 3), Buffer.from([0]), u16(name.length), name]);
    expect(clientHelloName(withExtension(hello, 0, serverName(Buffer.from("evil.example.net"))))).toMatchObject(
      refused,
    );
    const bare = withExtension(hello, 0x1234, Buffer.alloc(0));
    const corrupt = Buffer.from(bare);
    corrupt.writeUInt16BE(0xffff, corrupt.length - 2);
    expect(clientHelloName(corrupt)).toMatchObject(refused);
    // Records of one byte each: no real client, and a reader that would join them over and over.
    expect(clientHelloName(inRecords(hello, 1))).toMatchObject({ reason: expect.stringContaining("records") });
    const endless = Buffer.concat([Buffer.from([22, 3, 1, 0, 20, 1, 0xff, 0xff, 0xff]), Buffer.alloc(16)]);
    expect(clientHelloName(endless)).toMatchObject({ reason: expect.stringContaining(`${MAX_CLIENT_HELLO_BYTES}`) });
  });

  it("ends where the ClientHello's records end, so the proxy can hold back what follows", async () => {
    const hello = await realClientHello("api.example.com");
    const next = await realClientHello("evil.example.net");
    expect(clientHelloName(Buffer.concat([hello, next]))).toEqual({
      kind: "name",
      name: "api.example.com",
      end: hello.length,
    });
  });

  it("is refused when the ClientHello's record carries more (a second hello would reach the server unread)", async () => {
    const hello = await realClientHello("api.example.com");
    const second = (await realClientHello("evil.example.net")).subarray(5);
    const message = Buffer.concat([hello.subarray(5), second]);
    const oneRecord = Buffer.concat([Buffer.from([22, 3, 1]), u16(message.length), message]);
    expect(clientHelloName(oneRecord)).toMatchObject({ kind: "refused", reason: expect.stringContaining("record") });
  });

  it("passes over a change_cipher_spec and early data before a ClientHello that answers a retry, and only there", async () => {
    const hello = await realClientHello("api.example.com");
    const changeCipherSpec = Buffer.from([20, 3, 3, 0, 1, 1]);
    const retried = Buffer.concat([changeCipherSpec, hello]);
    expect(clientHelloName(retried, true)).toEqual({ kind: "name", name: "api.example.com", end: retried.length });
    // Its header may arrive alone.
    expect(clientHelloName(changeCipherSpec.subarray(0, 5), true)).toEqual({ kind: "incomplete" });
    expect(clientHelloName(retried)).toMatchObject({ kind: "refused" });
    // Early data sent with the first hello, which the server skips after a retry (RFC 8446 §4.2.10).
    const earlyData = Buffer.concat([Buffer.from([23, 3, 3, 0, 32]), Buffer.alloc(32, 7)]);
    const afterEarlyData = Buffer.concat([changeCipherSpec, earlyData, hello]);
    expect(clientHelloName(afterEarlyData, true)).toMatchObject({ kind: "name", name: "api.example.com" });
  });
});
