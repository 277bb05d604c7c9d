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
  const parsed = schema.safeParse(parseJsonText(text, "the request body"));
  if (!parsed.success) throw validationError("the request body does not match the schema", parsed.error);
  return parsed.data;
}

/**
 * JSON text as every way in reads it (a body, RPC arguments once stringified): nesting bounded before
 * anything recursive sees it (422), parsed (400), and without a `__proto__` key (422), which JSON.parse
 * keeps as a plain key but every object zod builds from it would drop silently: the job, its stored
 * metadata and the test judge would see other values than the caller sent.
 */
export function parseJsonText(text: string, subject: string): unknown {
  if (jsonNestsDeeperThan(text)) throw nestsTooDeep(subject);
  // The key can only be spelled literally or with a \u escape; the reviver costs every value a call.
  const reviver = text.includes("__proto__") || text.includes("\\u") ? refuseProtoKey : undefined;
  try {
    return JSON.parse(text, reviver);
  } catch (error) {
    if (error instanceof CordonError) throw error;
    throw new CordonError(
      ErrorCode.INVALID_JSON,
      `${subject} is not valid JSON: ${error instanceof Error ? error.message : ""}`,
    );
  }
}

function refuseProtoKey(key: string, value: unknown): unknown {
  if (key === "__proto__") {
    throw new CordonError(ErrorCode.VALIDATION_ERROR, "the key __proto__ is not accepted", {
      issues: [{ path: "", message: "no object may have a key named __proto__", code: "reserved_key" }],
    });
  }
  return value;
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
