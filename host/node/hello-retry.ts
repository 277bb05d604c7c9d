/**
 * Whether a TLS server's first answer in a tunnel is a HelloRetryRequest (RFC 8446 §4.1.4).
 *
 * A server that asks for a retry reads a second ClientHello, and a job could name another server in
 * that one than in the first, which the proxy checked. So after a retry the proxy reads the next
 * ClientHello as well, and until the server has answered it holds back whatever the job sends after
 * a ClientHello (a job could send both at once).
 */
import { CONTENT_TYPE_ALERT, CONTENT_TYPE_CHANGE_CIPHER_SPEC, firstHandshakeMessage } from "./tls-records.ts";

const HANDSHAKE_SERVER_HELLO = 2;
/** A HelloRetryRequest is a ServerHello with this random: SHA-256 of "HelloRetryRequest" (§4.1.3). */
const RETRY_RANDOM = Buffer.from("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c", "hex");
/** A ServerHello is a few hundred bytes; a retry's one variable part is its cookie. */
const MAX_SERVER_HELLO_BYTES = 32 * 1024;
/** Enough for the longest ServerHello in the most records, and the records passed over before it. */
const GATHER_LIMIT = 2 * MAX_SERVER_HELLO_BYTES;

export type ServerAnswer =
  | { kind: "incomplete" }
  /** `end`: where the retry's records end; the server's next answer starts there. */
  | { kind: "retry"; end: number }
  /** A ServerHello: what follows is encrypted (TLS 1.3) or needs no check (TLS 1.2). */
  | { kind: "other" }
  | { kind: "refused"; reason: string };

export function serverAnswer(bytes: Uint8Array): ServerAnswer {
  const message = firstHandshakeMessage(bytes, { maxBytes: MAX_SERVER_HELLO_BYTES, passOver: passedOverByServer });
  if (message.kind === "incomplete") return message;
  // Whatever cannot be read as the server's hello closes the tunnel: were it a retry the proxy
  // failed to recognise, the job's second ClientHello would go through unread.
  if (message.kind === "refused") return { kind: "refused", reason: `the server's answer: ${message.reason}` };
  if (message.type !== HANDSHAKE_SERVER_HELLO) {
    return { kind: "refused", reason: "the server's first handshake message is not a ServerHello" };
  }
  if (!isRetryRandom(message.body)) return { kind: "other" };
  // A retry sharing its record with more would leave the proxy unsure where the next answer starts.
  if (!message.aligned) return { kind: "refused", reason: "the server's HelloRetryRequest does not end its record" };
  return { kind: "retry", end: message.end };
}

/**
 * A change_cipher_spec after a retry (RFC 8446 §D.4), and alerts: a warning changes nothing, and
 * after a fatal one the server closes the connection, which ends the tunnel.
 */
function passedOverByServer(contentType: number): boolean {
  return contentType === CONTENT_TYPE_CHANGE_CIPHER_SPEC || contentType === CONTENT_TYPE_ALERT;
}

/** legacy_version (2 bytes), then the 32-byte random. */
function isRetryRandom(body: Uint8Array): boolean {
  return body.length >= 34 && RETRY_RANDOM.equals(body.subarray(2, 34));
}

/**
 * The server's bytes in a tunnel, gathered until its answers to the job's ClientHellos are read;
 * `next()` is the answer to the ClientHello just forwarded. Gathers at most GATHER_LIMIT bytes,
 * whether or not an answer is awaited: a server that talks first, or floods, is not buffered.
 */
export class ServerAnswers {
  #bytes = Buffer.alloc(0);
  #done = false;
  #full = false;
  #closed = false;
  #waiting: ((answer: ServerAnswer | { kind: "closed" }) => void) | undefined;

  feed(chunk: Buffer): void {
    if (this.#done || this.#full) return;
    const room = GATHER_LIMIT - this.#bytes.length;
    this.#full = chunk.length > room;
    this.#bytes = Buffer.concat([this.#bytes, chunk.subarray(0, room)]);
    this.#settle();
  }

  close(): void {
    this.#closed = true;
    this.#settle();
  }

  next(): Promise<ServerAnswer | { kind: "closed" }> {
    return new Promise((resolve) => {
      this.#waiting = resolve;
      this.#settle();
    });
  }

  #settle(): void {
    const waiting = this.#waiting;
    if (!waiting) return;
    let answer: ServerAnswer | { kind: "closed" } = serverAnswer(this.#bytes);
    if (answer.kind === "incomplete") {
      if (this.#full)
        answer = { kind: "refused", reason: `the server sent over ${GATHER_LIMIT} bytes before its hello` };
      else if (this.#closed) answer = { kind: "closed" };
      else return;
    }
    this.#waiting = undefined;
    if (answer.kind === "retry") {
      // Still full if it was: what was not gathered is gone, so the next answer must be in what was.
      this.#bytes = this.#bytes.subarray(answer.end);
    } else {
      this.#done = true;
      this.#bytes = Buffer.alloc(0);
    }
    waiting(answer);
  }
}
