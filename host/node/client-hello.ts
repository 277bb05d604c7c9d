/**
 * Reads the server name a TLS client asks for (SNI) from the first bytes it sends into a tunnel.
 *
 * The proxy checks a CONNECT's host; what travels inside is encrypted, but the ClientHello that
 * opens it is not. A job that tunnels to an allowed host and names another one in its ClientHello
 * reaches that other site wherever both share a server (CDNs and shared hosting do): the proxy
 * must see the same name in both places. A ClientHello that hides its real name (Encrypted Client
 * Hello, or the older encrypted SNI) cannot be checked and is refused, as is anything that is not a
 * ClientHello at all. Parsed by hand: RFC 8446 §4.1.2 and RFC 6066 §3, nothing else is needed.
 */

import {
  CONTENT_TYPE_APPLICATION_DATA,
  CONTENT_TYPE_CHANGE_CIPHER_SPEC,
  firstHandshakeMessage,
  Malformed,
  Reader,
} from "./tls-records.ts";

/** Enough for any ClientHello a real client sends (post-quantum key shares included). */
export const MAX_CLIENT_HELLO_BYTES = 32 * 1024;

const HANDSHAKE_CLIENT_HELLO = 1;
const EXTENSION_SERVER_NAME = 0x0000;
const NAME_TYPE_HOST_NAME = 0;
/** Encrypted Client Hello (RFC 9849) and the draft encrypted SNI before it. */
const HIDDEN_NAME_EXTENSIONS = new Set([0xfe0d, 0xffce]);

export type ClientHelloName =
  | { kind: "incomplete" }
  /** `end`: where the records that carried the ClientHello end in the bytes read. */
  | { kind: "name"; name: string; end: number }
  | { kind: "refused"; reason: string };

/**
 * What may come between a client's two ClientHellos: a change_cipher_spec (RFC 8446 §D.4), and the
 * early data it sent with the first one, which a server that asked for a retry skips (§4.2.10).
 */
function passedOverBeforeRetriedHello(contentType: number): boolean {
  return contentType === CONTENT_TYPE_CHANGE_CIPHER_SPEC || contentType === CONTENT_TYPE_APPLICATION_DATA;
}

/**
 * The name in the ClientHello at the start of `bytes`, "incomplete" while more bytes are needed, or
 * why it cannot be used. The name is lower case without a trailing dot, as hosts are compared.
 * `afterRetry`: the ClientHello answers a HelloRetryRequest (see passedOverBeforeRetriedHello).
 */
export function clientHelloName(bytes: Uint8Array, afterRetry = false): ClientHelloName {
  const message = firstHandshakeMessage(bytes, {
    maxBytes: MAX_CLIENT_HELLO_BYTES,
    ...(afterRetry ? { passOver: passedOverBeforeRetriedHello } : {}),
  });
  if (message.kind !== "message") return message;
  if (message.type !== HANDSHAKE_CLIENT_HELLO) return refused("the first handshake message is not a ClientHello");
  if (!message.aligned) return refused("the ClientHello does not end its TLS record");
  const name = readClientHello(new Reader(message.body));
  return name.kind === "name" ? { ...name, end: message.end } : name;
}

function readClientHello(reader: Reader): { kind: "name"; name: string } | { kind: "refused"; reason: string } {
  try {
    reader.skip(2 + 32); // legacy_version, random
    reader.skip(reader.uint8()); // legacy_session_id
    reader.skip(reader.uint16()); // cipher_suites
    reader.skip(reader.uint8()); // legacy_compression_methods
    if (reader.remaining === 0) return refused("the ClientHello names no server (no SNI)");
    const extensions = new Reader(reader.bytes(reader.uint16()));
    let name: string | undefined;
    while (extensions.remaining > 0) {
      const type = extensions.uint16();
      const data = new Reader(extensions.bytes(extensions.uint16()));
      if (HIDDEN_NAME_EXTENSIONS.has(type)) return refused("the ClientHello hides its server name (encrypted)");
      if (type !== EXTENSION_SERVER_NAME) continue;
      if (name !== undefined) return refused("the ClientHello names its server twice");
      name = readServerName(data);
    }
    if (name === undefined) return refused("the ClientHello names no server (no SNI)");
    return { kind: "name", name };
  } catch (error) {
    if (error instanceof Malformed) return refused("the ClientHello is malformed");
    throw error;
  }
}

/** The one host_name of a server_name extension (RFC 6066 allows one name per type). */
function readServerName(data: Reader): string {
  const list = new Reader(data.bytes(data.uint16()));
  let name: string | undefined;
  while (list.remaining > 0) {
    const type = list.uint8();
    const value = list.bytes(list.uint16());
    if (type !== NAME_TYPE_HOST_NAME) continue;
    if (name !== undefined) throw new Malformed();
    name = asciiName(value);
  }
  if (name === undefined) throw new Malformed();
  return name;
}

/** A DNS name is ASCII (IDNs travel as punycode); anything else is not a name the policy knows. */
function asciiName(bytes: Uint8Array): string {
  let name = "";
  for (const byte of bytes) {
    if (byte <= 0x20 || byte >= 0x7f) throw new Malformed();
    name += String.fromCharCode(byte);
  }
  return name.toLowerCase().replace(/\.$/, "");
}

function refused(reason: string): { kind: "refused"; reason: string } {
  return { kind: "refused", reason };
}
