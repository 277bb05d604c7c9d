/**
 * Whether a TLS server's first answer in a tunnel is a HelloRetryRequest (RFC 8446 §4.1.4).
 *
 * A server that asks for a retry reads a second ClientHello, and a job could name another server in
 * that one than in the first, which the proxy checked. So after a retry the proxy reads the next
 * ClientHello as well, and until the server has answered it holds back whatever the job sends after
 * a ClientHello (a job could send both at once).
 */
import { firstHandshakeMessage } from "./tls-records.ts";

const HANDSHAKE_SERVER_HELLO = 2;
/** A HelloRetryRequest is a ServerHello with this random: SHA-256 of "HelloRetryRequest" (§4.1.3). */
const RETRY_RANDOM = Buffer.from("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c", "hex");
/** A ServerHello is a few hundred bytes; a retry's one variable part is its cookie. */
const MAX_SERVER_HELLO_BYTES = 32 * 1024;

export type ServerAnswer =
  | { kind: "incomplete" }
  /** `end`: where the retry's records end; the server's next answer starts there. */
  | { kind: "retry"; end: number }
  /** Anything else: a ServerHello (the rest is encrypted or certificates), an alert, not TLS at all. */
  | { kind: "other" }
  | { kind: "refused"; reason: string };

export function serverAnswer(bytes: Uint8Array): ServerAnswer {
  const message = firstHandshakeMessage(bytes, { maxBytes: MAX_SERVER_HELLO_BYTES, skipChangeCipherSpec: true });
  if (message.kind === "incomplete") return message;
  // An alert, bytes that are not TLS, or a first message no server sends: not a retry, and nothing
  // the job could use to send a second ClientHello past the check.
  if (message.kind === "refused") return { kind: "other" };
  if (message.type !== HANDSHAKE_SERVER_HELLO || !isRetryRandom(message.body)) return { kind: "other" };
  // A retry sharing its record with more would leave the proxy unsure where the next answer starts.
  if (!message.aligned) return { kind: "refused", reason: "the server's HelloRetryRequest does not end its record" };
  return { kind: "retry", end: message.end };
}

/** legacy_version (2 bytes), then the 32-byte random. */
function isRetryRandom(body: Uint8Array): boolean {
  return body.length >= 34 && RETRY_RANDOM.equals(body.subarray(2, 34));
}

/**
 * The server's bytes in a tunnel, gathered until its answers to the job's ClientHellos are read;
 * `next()` is the answer to the ClientHello just forwarded. Gathers at most one hello's worth.
 */
export class ServerAnswers {
  #bytes = Buffer.alloc(0);
  #done = false;
  #closed = false;
  #waiting: ((answer: ServerAnswer | { kind: "closed" }) => void) | undefined;

  feed(chunk: Buffer): void {
    if (this.#done) return;
    this.#bytes = Buffer.concat([this.#bytes, chunk]);
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
    const answer = serverAnswer(this.#bytes);
    if (answer.kind === "incomplete") {
      if (!this.#closed) return;
      this.#done = true;
      this.#waiting = undefined;
      return waiting({ kind: "closed" });
    }
    this.#waiting = undefined;
    if (answer.kind === "retry") {
      this.#bytes = this.#bytes.subarray(answer.end);
    } else {
      this.#done = true;
      this.#bytes = Buffer.alloc(0);
    }
    waiting(answer);
  }
}
