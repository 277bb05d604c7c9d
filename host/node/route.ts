/**
 * `POST /v1/node/run` (authorised by the caller, host/main.ts). The body is a NodeRunRequest; the
 * reply is always 200 with a NodeRunReply once the body is valid, whatever the job did.
 *
 * The host creates the runner on first use (host/main.ts), configured from the environment: CORDON_NODE_JOBS
 * (sandboxes at once, default 4), CORDON_NODE_UID / CORDON_NODE_GID (the uid a root host runs jobs as,
 * default 65534), CORDON_NODE_STAGING (where job code is staged, default the OS temp directory),
 * CORDON_NODE_WARM (warm sandboxes per trust cordon, default 1, 0 disables; see warmSetting), CORDON_NODE_PACKAGES_DIR
 * (the package cache, default <temp>/cordon-node-packages), CORDON_NODE_PACKAGES_MAX_MB (its bound,
 * default 1024), CORDON_NODE_INSTALL_TIMEOUT_MS (default 60000), CORDON_NODE_REGISTRY (default npm's),
 * CORDON_NODE_PACKAGES_SHARED (1: one cache entry per package set for all tenants; default per tenant).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { readBody, send } from "../http.ts";
import { NodeRunner, type NodeRunnerOptions } from "./node-runner.ts";
import { NodeRunRequest, type NodeCordon } from "./protocol.ts";

const MiB = 1024 * 1024;

export function runnerFromEnv(env: NodeJS.ProcessEnv, extra: NodeRunnerOptions = {}): NodeRunner {
  // A value that is not a non-negative integer is ignored (the default applies).
  const number = (value: string | undefined) => {
    if (value === undefined || !/^\d+$/.test(value.trim())) return undefined;
    return Number(value);
  };
  const cacheMb = number(env.CORDON_NODE_PACKAGES_MAX_MB);
  return new NodeRunner({
    maxConcurrent: number(env.CORDON_NODE_JOBS),
    sandboxUid: number(env.CORDON_NODE_UID),
    sandboxGid: number(env.CORDON_NODE_GID),
    stagingRoot: env.CORDON_NODE_STAGING,
    warmPerCordon: warmSetting(env.CORDON_NODE_WARM),
    packageCacheRoot: env.CORDON_NODE_PACKAGES_DIR,
    packageCacheMaxBytes: cacheMb === undefined ? undefined : cacheMb * MiB,
    installTimeoutMs: number(env.CORDON_NODE_INSTALL_TIMEOUT_MS),
    registry: env.CORDON_NODE_REGISTRY,
    sharePackagesAcrossTenants: env.CORDON_NODE_PACKAGES_SHARED === "1",
    ...extra,
  });
}

/**
 * CORDON_NODE_WARM: `2` (every cordon), or `high=2,medium=1,low=0` (the cordons it names; the others keep
 * the default). Anything else is ignored.
 */
export function warmSetting(value: string | undefined): NodeRunnerOptions["warmPerCordon"] {
  const text = value?.trim() ?? "";
  if (/^\d+$/.test(text)) return Number(text);
  const sizes: Partial<Record<NodeCordon, number>> = {};
  for (const part of text.split(",")) {
    const match = /^\s*(high|medium|low|untrusted)\s*=\s*(\d+)\s*$/.exec(part);
    if (!match) return undefined;
    sizes[match[1] as NodeCordon] = Number(match[2]);
  }
  return sizes;
}

/** `POST /v1/node/jobs/:id/cancel`: kills the job's processes. */
export function handleNodeCancel(executionId: string, response: ServerResponse, runner: NodeRunner): void {
  send(response, 200, { cancelled: runner.cancel(executionId) });
}

export async function handleNodeRun(
  request: IncomingMessage,
  response: ServerResponse,
  runner: NodeRunner,
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
