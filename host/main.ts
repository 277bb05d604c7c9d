/**
 * The local sandbox host: a small Node service on loopback that runs jobs where the dispatcher's own
 * workerd must not (a job that wedges or exhausts memory there would take the dispatcher with it).
 *
 *   POST /v1/edge/run               body: a runner request (src/edge/protocol.ts) → the job's next event
 *   POST /v1/edge/jobs/:id/answer   body: {callId, answer} → the job's next event (see edge-jobs.ts)
 *   POST /v1/edge/jobs/:id/cancel   kills the runner process holding the job
 *   POST /v1/edge/binding-call      from runner processes only: relays a job's binding call
 *   POST /v1/job-db/query           body: {mode, statements, deadline} → a DB binding statement's result
 *                                   (the jobs' database runs here under `npm run dev`; job-database.ts)
 *   POST /v1/node/run               a node job (see node/README.md)
 *   POST /v1/node/jobs/:id/cancel   kills a node job's processes
 *   GET  /healthz                   → pool statistics
 *
 * Every call but /healthz needs `Authorization: Bearer $CORDON_HOST_TOKEN`.
 * Configuration (environment): CORDON_HOST_PORT (default 8788), CORDON_HOST_TOKEN (required),
 * CORDON_EDGE_RUNNERS (processes per trust cordon, default 2), CORDON_EDGE_HEAP_MB (per-isolate heap, default 128),
 * CORDON_HOST_EXPEDITE_RCU (0: leave the kernel's RCU setting alone; see node/kernel-tuning.ts),
 * CORDON_JOB_DB_PERSIST (where the jobs' database keeps its files: default `.wrangler/state/v3`, wrangler dev's).
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { randomUUID, timingSafeEqual } from "node:crypto";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { EdgeCordons, isCordon, type Cordon } from "./edge-cordons.ts";
import { EdgeJobs } from "./edge-jobs.ts";
import { readBody, send } from "./http.ts";
import { JobDatabaseProcess } from "./job-database.ts";
import { JobDatabaseQuery } from "../src/bindings/job-database-protocol.ts";
import { cannedRoutes } from "./node/egress-routes.ts";
import type { NodeRunner } from "./node/node-runner.ts";
import { tuneKernel } from "./node/kernel-tuning.ts";
import { handleNodeCancel, handleNodeRun, runnerFromEnv } from "./node/route.ts";

const RUNNER_ENTRY = fileURLToPath(new URL("../workers/edge-runner/index.ts", import.meta.url));
const JOB_DATABASE_ENTRY = fileURLToPath(new URL("../workers/job-database/index.ts", import.meta.url));
const RUNNER_COMPATIBILITY_DATE = "2026-10-20";

export interface HostConfig {
  port: number;
  token: string;
  edgeRunners: number;
  heapLimitMb: number;
  /** The local state directory the jobs' database (JOB_DB) keeps its files in (see job-database.ts). */
  jobDbPersistDir: string;
  /** Tests only: the egress tests' stand-in for the internet (see RunnerOptions). */
  egressTestUpstreamScript?: string;
}

export interface RunningHost {
  url: string;
  close(): Promise<void>;
}

export function configFromEnv(env: NodeJS.ProcessEnv): HostConfig {
  const token = env.CORDON_HOST_TOKEN;
  if (!token) throw new Error("CORDON_HOST_TOKEN must be set");
  return {
    port: Number(env.CORDON_HOST_PORT ?? 8788),
    token,
    edgeRunners: Number(env.CORDON_EDGE_RUNNERS ?? 2),
    heapLimitMb: Number(env.CORDON_EDGE_HEAP_MB ?? 128),
    jobDbPersistDir: env.CORDON_JOB_DB_PERSIST ?? ".wrangler/state/v3",
  };
}

export function bundleEdgeRunner(): Promise<string> {
  return bundleWorker(RUNNER_ENTRY);
}

export function bundleJobDatabase(): Promise<string> {
  return bundleWorker(JOB_DATABASE_ENTRY);
}

async function bundleWorker(entry: string): Promise<string> {
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2023",
    external: ["cloudflare:*"],
    write: false,
    logLevel: "silent",
  });
  const file = result.outputFiles[0];
  if (!file) throw new Error(`esbuild produced no bundle of ${entry}`);
  return file.text;
}

export async function startHost(config: HostConfig): Promise<RunningHost> {
  const runnerToken = randomUUID();
  const kernel = tuneKernel(process.env);
  // Also when the process ends without close(): Miniflare's own signal handlers exit the process.
  process.once("exit", kernel.restore);
  // Filled once the runner pools are up; until then the host answers 503.
  const ready: { edge?: EdgeCordons; jobs?: EdgeJobs; node?: () => NodeRunner; jobDb?: JobDatabaseProcess } = {};
  const server = createServer((request, response) => {
    const { edge, jobs, node, jobDb } = ready;
    if (!edge || !jobs || !node || !jobDb) return send(response, 503, { error: "starting" });
    handle(
      request,
      response,
      { ...config, runnerToken, expeditedRcu: kernel.expeditedRcu },
      { edge, jobs, node, jobDb },
    ).catch((error: unknown) => {
      console.error("[cordon-host] request failed", error);
      if (!response.headersSent) send(response, 500, { error: "internal error" });
    });
  });
  // Listen first: runners are told the host's address, to relay their jobs' binding calls.
  await new Promise<void>((resolve) => server.listen(config.port, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : config.port;
  const url = `http://127.0.0.1:${port}`;

  const edge = new EdgeCordons(
    {
      script: await bundleEdgeRunner(),
      token: runnerToken,
      hostUrl: url,
      heapLimitMb: config.heapLimitMb,
      compatibilityDate: RUNNER_COMPATIBILITY_DATE,
      ...(config.egressTestUpstreamScript ? { egressTestUpstreamScript: config.egressTestUpstreamScript } : {}),
    },
    config.edgeRunners,
  );
  await edge.start();
  // After the runners: it takes their V8 flags from the environment (see JobDatabaseProcess).
  const jobDb = await JobDatabaseProcess.start({
    persistDir: config.jobDbPersistDir,
    script: await bundleJobDatabase(),
  });
  // The tests' stand-in for the internet serves node jobs' egress too (edge runners get it above).
  const canned = config.egressTestUpstreamScript ? await cannedRoutes(config.egressTestUpstreamScript) : undefined;
  let nodeRunner: NodeRunner | undefined;
  ready.node = () => (nodeRunner ??= runnerFromEnv(process.env, canned ? { egress: canned } : {}));
  ready.edge = edge;
  ready.jobs = new EdgeJobs(edge);
  ready.jobDb = jobDb;
  return {
    url,
    async close() {
      kernel.restore();
      process.off("exit", kernel.restore);
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await Promise.all([edge.close(), jobDb.close(), nodeRunner?.close(), canned?.close()]);
    },
  };
}

async function handle(
  request: IncomingMessage,
  response: ServerResponse,
  config: HostConfig & { runnerToken: string; expeditedRcu: boolean },
  { edge, jobs, node, jobDb }: { edge: EdgeCordons; jobs: EdgeJobs; node: () => NodeRunner; jobDb: JobDatabaseProcess },
) {
  const url = new URL(request.url ?? "/", "http://host");
  if (url.pathname === "/healthz") {
    return send(response, 200, { ok: true, edge: edge.stats, kernel: { expeditedRcu: config.expeditedRcu } });
  }
  if (url.pathname === "/v1/edge/binding-call" && request.method === "POST") {
    // From a runner process (its own token), never from the dispatcher.
    if (!authorised(request.headers.authorization, config.runnerToken))
      return send(response, 401, { error: "unauthorized" });
    const relayed = parseJson(await readBody(request));
    if (!isObject(relayed) || typeof relayed.executionId !== "string")
      return send(response, 400, { error: "malformed call" });
    return send(response, 200, await jobs.relay(relayed.executionId, relayed.call));
  }
  if (!authorised(request.headers.authorization, config.token)) return send(response, 401, { error: "unauthorized" });
  if (url.pathname === "/v1/job-db/query" && request.method === "POST") {
    const query = jobDbQueryOf(await readBody(request));
    if (!query) return send(response, 400, { error: "malformed query" });
    // A dispatcher that stopped waiting has answered its job: a statement not yet run is dropped.
    const gone = new AbortController();
    response.on("close", () => {
      if (!response.writableFinished) gone.abort();
    });
    // Closed while its body was read: the event has passed already.
    if (response.destroyed) gone.abort();
    return send(response, 200, await jobDb.query(query, gone.signal));
  }
  if (url.pathname === "/v1/node/run" && request.method === "POST") return handleNodeRun(request, response, node());
  const nodeCancel = /^\/v1\/node\/jobs\/([\w-]+)\/cancel$/.exec(url.pathname);
  if (nodeCancel && request.method === "POST") return handleNodeCancel(nodeCancel[1] ?? "", response, node());

  const cancelPath = /^\/v1\/edge\/jobs\/([\w-]+)\/cancel$/.exec(url.pathname);
  if (cancelPath && request.method === "POST") {
    return send(response, 200, { cancelled: await jobs.cancel(cancelPath[1] ?? "") });
  }
  const answerPath = /^\/v1\/edge\/jobs\/([\w-]+)\/answer$/.exec(url.pathname);
  if (answerPath && request.method === "POST") {
    const answered = parseJson(await readBody(request));
    if (!isObject(answered) || typeof answered.callId !== "string")
      return send(response, 400, { error: "malformed answer" });
    const next = jobs.answer(answerPath[1] ?? "", answered.callId, answered.answer);
    if (!next) return send(response, 404, { error: "no such job" });
    return send(response, 200, await next);
  }
  if (url.pathname !== "/v1/edge/run" || request.method !== "POST") return send(response, 404, { error: "not found" });

  const body = await readBody(request);
  if (body === undefined) return send(response, 413, { error: "body too large" });
  const routing = routingOf(body);
  if (routing === undefined) return send(response, 400, { error: "executionId, timeoutMs or cordon missing" });
  send(response, 200, await jobs.start(routing.executionId, routing.cordon, body, routing.deadline));
}

function authorised(header: string | undefined, token: string): boolean {
  const expected = Buffer.from(`Bearer ${token}`);
  const given = Buffer.from(header ?? "");
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/**
 * The fields the host routes on; the runner Worker validates the whole request itself. The deadline
 * is the job's own (`spec.deadline`, from its admission), so time spent waiting for a runner counts;
 * no later than `timeoutMs` from now, whatever the request says.
 */
function routingOf(body: string): { executionId: string; deadline: number; cordon: Cordon } | undefined {
  const value = parseJson(body);
  if (!isObject(value)) return undefined;
  const { executionId, timeoutMs, cordon, spec } = value;
  if (typeof executionId !== "string" || typeof timeoutMs !== "number" || !isCordon(cordon)) return undefined;
  const latest = Date.now() + timeoutMs;
  const stated = isObject(spec) && typeof spec.deadline === "number" ? spec.deadline : latest;
  return { executionId, deadline: Math.min(stated, latest), cordon };
}

/** The dispatcher is trusted (it holds the token); the shape is checked so a mistake answers 400. */
function jobDbQueryOf(body: string | undefined): JobDatabaseQuery | undefined {
  const parsed = JobDatabaseQuery.safeParse(parseJson(body));
  return parsed.success ? parsed.data : undefined;
}

function parseJson(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const host = await startHost(configFromEnv(process.env));
  console.log(`[cordon-host] listening on ${host.url}`);
  const stop = () => void host.close().then(() => process.exit(0));
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}
