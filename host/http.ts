/** The host's two HTTP helpers: a size-bounded body read and a JSON answer. */
import type { IncomingMessage, ServerResponse } from "node:http";

/** Largest request body the host reads (a runner request carries the job's modules). */
export const MAX_BODY_BYTES = 8 * 1024 * 1024;

/** The body as text, or undefined when it is larger than MAX_BODY_BYTES. */
export async function readBody(request: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    const buffer = chunk as Buffer;
    size += buffer.length;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}

export function send(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { "content-type": "application/json" });
  response.end(JSON.stringify(body));
}
