/**
 * The first handshake message at the start of a TLS byte stream, joined from the records it spans
 * (RFC 8446 §5.1). Only the plaintext start of a handshake is read here: the hellos, which the
 * egress proxy checks before a tunnel carries anything else.
 */

const RECORD_HEADER_BYTES = 5;
const CONTENT_TYPE_HANDSHAKE = 22;
/** A hello fills one record, two or three with large key shares; more is not a real peer. */
const MAX_RECORDS = 8;

export type HandshakeMessage =
  | { kind: "incomplete" }
  | { kind: "refused"; reason: string }
  /**
   * `end`: where the records that carried it end; `aligned`: the message ends its last record. A
   * hello must (RFC 8446 §5.1): what follows it in its record would reach the peer unread.
   */
  | { kind: "message"; type: number; body: Uint8Array; end: number; aligned: boolean };

export interface MessageLimits {
  /** The longest message accepted, header excluded. */
  maxBytes: number;
  /**
   * Which records before the message are passed over, by content type: a TLS 1.3 peer sends a
   * change_cipher_spec around a HelloRetryRequest in "middlebox compatibility mode" (RFC 8446 §D.4).
   * None by default.
   */
  passOver?: (contentType: number) => boolean;
}

export const CONTENT_TYPE_CHANGE_CIPHER_SPEC = 20;
export const CONTENT_TYPE_ALERT = 21;
export const CONTENT_TYPE_APPLICATION_DATA = 23;

export function firstHandshakeMessage(bytes: Uint8Array, limits: MessageLimits): HandshakeMessage {
  const fragments: Uint8Array[] = [];
  let gathered = 0;
  const start = leadingRecordsEnd(bytes, limits.passOver);
  if (start === null) return incomplete(bytes, limits.maxBytes);
  let offset = start;
  let needed = Infinity;
  while (gathered < needed) {
    if (fragments.length === MAX_RECORDS) return refused("the handshake message spans too many TLS records");
    if (bytes.length < offset + RECORD_HEADER_BYTES) return incomplete(bytes, limits.maxBytes);
    if (bytes[offset] !== CONTENT_TYPE_HANDSHAKE) return refused("the bytes are not a TLS handshake");
    const length = recordLength(bytes, offset);
    if (length === 0) return refused("an empty TLS record");
    const end = offset + RECORD_HEADER_BYTES + length;
    if (bytes.length < end) return incomplete(bytes, limits.maxBytes);
    fragments.push(bytes.subarray(offset + RECORD_HEADER_BYTES, end));
    gathered += length;
    offset = end;
    if (needed === Infinity && gathered >= 4) {
      const header = Buffer.concat(fragments, gathered).subarray(0, 4);
      needed = 4 + ((header[1]! << 16) | (header[2]! << 8) | header[3]!);
      if (needed - 4 > limits.maxBytes) return refused(`the handshake message is over ${limits.maxBytes} bytes`);
    }
  }
  const message = fragments.length === 1 ? fragments[0]! : Buffer.concat(fragments, gathered);
  return {
    kind: "message",
    type: message[0]!,
    body: message.subarray(4, needed),
    end: offset,
    aligned: gathered === needed,
  };
}

/** Where the leading records to pass over end; null while one of them has not fully arrived. */
function leadingRecordsEnd(bytes: Uint8Array, passOver: MessageLimits["passOver"]): number | null {
  let offset = 0;
  while (passOver && bytes.length > offset && passOver(bytes[offset]!)) {
    if (bytes.length < offset + RECORD_HEADER_BYTES) return null;
    const end = offset + RECORD_HEADER_BYTES + recordLength(bytes, offset);
    if (bytes.length < end) return null;
    offset = end;
  }
  return offset;
}

function recordLength(bytes: Uint8Array, offset: number): number {
  return (bytes[offset + 3]! << 8) | bytes[offset + 4]!;
}

/** More bytes are needed, unless so many have come that no message within the limit is that long. */
function incomplete(bytes: Uint8Array, maxBytes: number): HandshakeMessage {
  const most = MAX_RECORDS * RECORD_HEADER_BYTES + 4 + maxBytes;
  return bytes.length > most ? refused(`the handshake message is over ${maxBytes} bytes`) : { kind: "incomplete" };
}

function refused(reason: string): { kind: "refused"; reason: string } {
  return { kind: "refused", reason };
}

export class Malformed extends Error {}

/** Big-endian reads that throw Malformed instead of reading past the end. */
export class Reader {
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
    if (count > this.#bytes.length - this.#at) throw new Malformed();
    const slice = this.#bytes.subarray(this.#at, this.#at + count);
    this.#at += count;
    return slice;
  }
}
