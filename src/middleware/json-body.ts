/**
 * The one way a route reads a JSON body: checks the content type (a JSON route without
 * `application/json` is refused, not read as `{}`), bounds the size while reading (413) and the
 * nesting before anything recursive sees it (422), parses (400) and validates with zod (422 with the
 * issues). Throws CordonError; onError writes the envelope.
 */
import type { z } from "zod";
import { CordonError, ErrorCode } from "../errors";
import { jsonNestsDeeperThan } from "../json-depth";
import { MAX_BODY_BYTES } from "../schemas";
import { nestsTooDeep, validationError } from "./query";

export async function readJsonBody<S extends z.ZodType>(request: Request, schema: S): Promise<z.infer<S>> {
  const contentType = request.headers.get("content-type") ?? "";
  if (!/^application\/json\s*(;|$)/i.test(contentType)) {
    throw new CordonError(
      ErrorCode.UNSUPPORTED_MEDIA_TYPE,
      "send the body as JSON with `Content-Type: application/json`",
    );
  }
  const text = await readBounded(request, MAX_BODY_BYTES);
  if (jsonNestsDeeperThan(text)) throw nestsTooDeep("the request body");
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new CordonError(
      ErrorCode.INVALID_JSON,
      `the body is not valid JSON: ${error instanceof Error ? error.message : ""}`,
    );
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw validationError("the request body does not match the schema", parsed.error);
  return parsed.data;
}

async function readBounded(request: Request, maxBytes: number): Promise<string> {
  const tooLarge = () =>
    new CordonError(ErrorCode.PAYLOAD_TOO_LARGE, `the body is larger than ${maxBytes} bytes`, { maxBytes });
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > maxBytes) throw tooLarge();
  if (!request.body) return "";
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel();
      throw tooLarge();
    }
    chunks.push(value);
  }
  const joined = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    joined.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return new TextDecoder().decode(joined);
}
