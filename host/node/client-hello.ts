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

/** Enough for any ClientHello a real client sends (post-quantum key shares included). */
export const MAX_CLIENT_HELLO_BYTES = 32 * 1024;

/** A real ClientHello fills one record, two or three with large key shares; more is not a client. */
const MAX_CLIENT_HELLO_RECORDS = 8;
const RECORD_HEADER_BYTES = 5;
const CONTENT_TYPE_HANDSHAKE = 22;
const HANDSHAKE_CLIENT_HELLO = 1;
const EXTENSION_SERVER_NAME = 0x0000;
const NAME_TYPE_HOST_NAME = 0;
/** Encrypted Client Hello (RFC 9849) and the draft encrypted SNI before it. */
const HIDDEN_NAME_EXTENSIONS = new Set([0xfe0d, 0xffce]);

export type ClientHelloName =
  { kind: "incomplete" } | { kind: "name"; name: string } | { kind: "refused"; reason: string };

/**
 * The name in the ClientHello at the start of `bytes`, "incomplete" while more bytes are needed, or
 * why it cannot be used. The name is lower case without a trailing dot, as hosts are compared.
 */
export function clientHelloName(bytes: Uint8Array): ClientHelloName {
  const handshake = handshakeBytes(bytes);
  if (handshake.kind !== "bytes") return handshake;
  return readClientHello(new Reader(handshake.bytes));
}

/** The handshake message's bytes, joined from the TLS records it spans. */
function handshakeBytes(
  bytes: Uint8Array,
): { kind: "bytes"; bytes: Uint8Array } | Exclude<ClientHelloName, { kind: "name" }> {
  const fragments: Uint8Array[] = [];
  let gathered = 0;
  let offset = 0;
  let needed = Infinity;
  while (gathered < needed) {
    if (fragments.length === MAX_CLIENT_HELLO_RECORDS) return refused("the ClientHello spans too many TLS records");
    if (bytes.length < offset + RECORD_HEADER_BYTES) return incomplete(bytes);
    if (bytes[offset] !== CONTENT_TYPE_HANDSHAKE) return refused("the tunnel does not start with a TLS handshake");
    const length = (bytes[offset + 3]! << 8) | bytes[offset + 4]!;
    if (length === 0) return refused("an empty TLS record");
    const end = offset + RECORD_HEADER_BYTES + length;
    if (bytes.length < end) return incomplete(bytes);
    fragments.push(bytes.subarray(offset + RECORD_HEADER_BYTES, end));
    gathered += length;
    offset = end;
    if (needed === Infinity && gathered >= 4) {
      const header = join(fragments, gathered).subarray(0, 4);
      if (header[0] !== HANDSHAKE_CLIENT_HELLO) return refused("the first handshake message is not a ClientHello");
      needed = 4 + ((header[1]! << 16) | (header[2]! << 8) | header[3]!);
      if (needed > MAX_CLIENT_HELLO_BYTES) return refused(`the ClientHello is over ${MAX_CLIENT_HELLO_BYTES} bytes`);
    }
  }
  return { kind: "bytes", bytes: join(fragments, gathered).subarray(4, needed) };
}

/** More bytes are needed, unless so many have come that no ClientHello is that long. */
function incomplete(bytes: Uint8Array): Exclude<ClientHelloName, { kind: "name" }> {
  const most = MAX_CLIENT_HELLO_RECORDS * RECORD_HEADER_BYTES + MAX_CLIENT_HELLO_BYTES;
  return bytes.length > most
    ? refused(`the ClientHello is over ${MAX_CLIENT_HELLO_BYTES} bytes`)
    : { kind: "incomplete" };
}

function readClientHello(reader: Reader): ClientHelloName {
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

function join(fragments: Uint8Array[], length: number): Uint8Array {
  if (fragments.length === 1) return fragments[0]!;
  const joined = new Uint8Array(length);
  let at = 0;
  for (const fragment of fragments) {
    joined.set(fragment, at);
    at += fragment.length;
  }
  return joined;
}

function refused(reason: string): { kind: "refused"; reason: string } {
  return { kind: "refused", reason };
}

class Malformed extends Error {}

/** Big-endian reads that throw Malformed instead of reading past the end. */
class Reader {
  readonly #bytes: Uint8Array;
  #at = 0;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
  }

  get remaining(): number {
    return this.#bytes.length - this.#at;
  }

  uint8(): number {
    return this.bytes(1)[0]!;
  }

  uint16(): number {
    const [high, low] = this.bytes(2);
    return (high! << 8) | low!;
  }

  skip(count: number): void {
    this.bytes(count);
  }

  bytes(count: number): Uint8Array {
    if (count > this.remaining) throw new Malformed();
    const slice = this.#bytes.subarray(this.#at, this.#at + count);
    this.#at += count;
    return slice;
  }
}
