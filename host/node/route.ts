/**
 * `POST /v1/node/run` (authorised by the caller, host/main.ts). The body is a NodeRunRequest; the
 * reply is always 200 with a NodeRunReply once the body is valid, whatever the job did.
 *
 * The runner is created on first use and configured from the environment: CORDON_NODE_JOBS
 * (sandboxes at once, default 4), CORDON_NODE_UID / CORDON_NODE_GID (the uid a root host runs jobs as,
 * default 65534), CORDON_NODE_STAGING (where job code is staged, default the OS temp directory).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { NodeRunner } from "./node-runner.ts";
import { NodeRunRequest } from "./protocol.ts";

const MAX_BODY_BYTES = 8 * 1024 * 1024;

let defaultRunner: NodeRunner | undefined;

export function runnerFromEnv(env: NodeJS.ProcessEnv): NodeRunner {
  const number = (value: string | undefined) => (value === undefined ? undefined : Number(value));
  return new NodeRunner({
    maxConcurrent: number(env.CORDON_NODE_JOBS),
    sandboxUid: number(env.CORDON_NODE_UID),
    sandboxGid: number(env.CORDON_NODE_GID),
    stagingRoot: env.CORDON_NODE_STAGING,
  });
}

/** `POST /v1/node/jobs/:id/cancel`: kills the job's processes. */
export function handleNodeCancel(
  executionId: string,
  response: ServerResponse,
  runner: NodeRunner = (defaultRunner ??= runnerFromEnv(process.env)),
): void {
  send(response, 200, { cancelled: runner.cancel(executionId) });
}

export async function handleNodeRun(
  request: IncomingMessage,
  response: ServerResponse,
  runner: NodeRunner = (defaultRunner ??= runnerFromEnv(process.env)),
): Promise<void> {
  const body = await readBody(request);
  if (body === undefined) return send(response, 413, { error: "body too large" });
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return send(response, 400, { error: "body is not JSON" });
  }
  const parsed = NodeRunRequest.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((issue) => `${issue.path.join(".") || "body"}: ${issue.message}`);
    return send(response, 400, { error: `invalid request: ${issues.slice(0, 5).join("; ")}` });
  }
  send(response, 200, await runner.run(parsed.data));
}

async function readBody(request: IncomingMessage): Promise<string | undefined> {
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

function send(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { "content-type": "application/json" });
  response.end(JSON.stringify(body));
}
