#!/usr/bin/env node
/**
 * `npm run bench`: how much the product path adds on top of a bare Worker Loader call.
 * Starts the product (scripts/dev.mjs) and the floor Worker (bench/floor) on free ports, measures
 * sequential latency and concurrent throughput of three targets, prints a markdown table (also written
 * to bench/results/latest.md) and stops everything it started. See bench/README.md.
 *
 * Flags: --n <sequential requests per target> (default 300), --concurrency <in-flight requests> (default 8).
 */
/* global AbortSignal -- Node 24 global; not in the shared lint globals */
import { spawn, spawnSync } from "node:child_process";
import { createWriteStream, existsSync, readFileSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { loadDevVars } from "../scripts/local-config.mjs";

const { values: flags } = parseArgs({
  options: { n: { type: "string", default: "300" }, concurrency: { type: "string", default: "8" } },
});
const SEQUENTIAL_REQUESTS = positiveInt(flags.n, "--n");
const CONCURRENCY = positiveInt(flags.concurrency, "--concurrency");
const THROUGHPUT_REQUESTS = 800;
const WARMUP_REQUESTS = 30;
/** Sequential requests per block of a target, and the discarded ones that start each block. */
const BLOCK_REQUESTS = 50;
const BLOCK_WARMUP = 5;
const DEADLINE_MS = 10 * 60_000;
const READY_TIMEOUT_MS = 120_000;
/** Once /healthz answers and the bench tenant exists, a job should run within this. */
const FIRST_JOB_TIMEOUT_MS = 20_000;
const READY_POLL_MS = 250;
const REQUEST_TIMEOUT_MS = 15_000;
const STOP_GRACE_MS = 5_000;
const TARGET_P50_RATIO = 1.3;

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const RESULTS_DIR = join(ROOT, "bench", "results");
/**
 * The in-process dispatcher keeps its own local state: two runtimes on one state directory would
 * both open the same Durable Object and D1 files (SQLITE_BUSY). It lives in memory (tmpfs) where the
 * machine has one: on disk, local SQLite's page writeback stalls workerd's one thread for ≈ 2 ms per
 * job (measured), a cost of simulating Durable Objects and D1 on a local file system that production
 * does not have. The supervised target keeps `npm run dev`'s state on disk, as a developer runs it.
 */
const IN_PROCESS_STATE = existsSync("/dev/shm")
  ? join("/dev/shm", `cordon-bench-${process.pid}`)
  : join(ROOT, ".wrangler", "bench-inprocess");
/** Each run measures a fresh tenant of its own on each dispatcher, with room for every request. */
const BENCH_TENANT = { name: "bench", maxTrustLevel: "high", rateLimit: 1_000_000, maxConcurrency: 50 };
const INPUT = { a: 2, b: 3 };
const EDGE_CODE = "export default async function (input) { return input.a + input.b }";
const NODE_JOB = { runtime: "node", code: "module.exports = async function ({ input }) { return input.a + input.b }" };
/** Between sequential node jobs, so a refill (which waits for an idle runner) is done before the next. */
const NODE_PAUSE_MS = 150;
const NODE_CONCURRENCY = 4;
/** Node targets run fewer sequential jobs: each one waits NODE_PAUSE_MS after it. */
const NODE_SEQUENTIAL_REQUESTS = 100;
const EXPECTED = INPUT.a + INPUT.b;

const children = [];
let stopping;

const deadline = setTimeout(() => {
  console.error(`[bench] hard deadline of ${DEADLINE_MS} ms reached`);
  void stopAll().then(() => process.exit(1));
}, DEADLINE_MS);
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => void stopAll().then(() => process.exit(130)));

try {
  await main();
  await stopAll();
  clearTimeout(deadline);
  process.exit(0);
} catch (error) {
  console.error(`[bench] ${error instanceof Error ? error.message : String(error)}`);
  await stopAll();
  process.exit(1);
}

async function main() {
  await mkdir(RESULTS_DIR, { recursive: true });
  const [productPort, hostPort, floorPort, inProcessPort] = await freePorts(4);
  const product = `http://127.0.0.1:${productPort}`;
  const floor = `http://127.0.0.1:${floorPort}`;
  const inProcess = `http://127.0.0.1:${inProcessPort}`;

  start("product", process.execPath, ["scripts/dev.mjs"], {
    PORT: String(productPort),
    CORDON_HOST_PORT: String(hostPort),
    // No warm pool at `medium`: the cold-start target runs there.
    CORDON_NODE_WARM: "high=1,medium=0,low=1",
  });
  const targets = [
    executionTarget("edge job via POST /v1/executions (local: supervised runner)", product),
    executionTarget("edge job via POST /v1/executions (in-process runner, production shape)", inProcess),
    // A pause between sequential requests lets the pool refill (it refills only when the runner is idle),
    // so this target measures warm-pool hits; its burst at c=4 shows how the pool copes under load.
    executionTarget("node job via POST /v1/executions (local host, warm pool on)", product, () => NODE_JOB, {
      pauseMs: NODE_PAUSE_MS,
      concurrency: NODE_CONCURRENCY,
      sequentialCount: NODE_SEQUENTIAL_REQUESTS,
    }),
    // The `medium` cordon has no warm pool in this run, so every job there starts a fresh sandbox
    // (coldStart in each reply confirms it).
    executionTarget(
      "node job via POST /v1/executions (local host, cold start)",
      product,
      () => ({ ...NODE_JOB, trustLevel: "medium" }),
      { pauseMs: NODE_PAUSE_MS, sequentialCount: NODE_SEQUENTIAL_REQUESTS, burst: false },
    ),
    {
      name: "floor: bare LOADER.load() worker",
      request: () =>
        fetch(floor, { method: "POST", body: JSON.stringify(INPUT), signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) }),
      correct: (body) => JSON.parse(body) === EXPECTED,
    },
    {
      name: "static GET /healthz",
      request: () => fetch(`${product}/healthz`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) }),
      correct: (body) => JSON.parse(body).ok === true,
    },
  ];
  const [edge, edgeInProcess, nodeWarm, nodeCold, bare, health] = targets;

  // One wrangler at a time: two starting together can pick the same port for an internal socket.
  await waitReady(health, READY_TIMEOUT_MS);
  await useBenchTenant(product, [edge, nodeWarm, nodeCold]);
  start("floor", "wrangler", ["dev", "-c", "bench/floor/wrangler.toml", "--port", String(floorPort)]);
  await waitReady(bare, READY_TIMEOUT_MS);
  // The same dispatcher with CORDON_HOST_URL empty: jobs run in its own Worker Loader, the shape it has
  // in production. Its state (D1, Durable Objects) is its own, fresh each run.
  await rm(IN_PROCESS_STATE, { recursive: true, force: true });
  const migrate = spawnSync(
    "wrangler",
    ["d1", "migrations", "apply", "DB", "--local", "--persist-to", IN_PROCESS_STATE],
    { cwd: ROOT, env: { ...process.env, CI: "1" }, encoding: "utf8" },
  );
  if (migrate.status !== 0) throw new Error(`migrations for the in-process dispatcher failed: ${migrate.stderr}`);
  start("inprocess", "wrangler", [
    "dev",
    "--port",
    String(inProcessPort),
    "--var",
    "CORDON_HOST_URL:",
    "--persist-to",
    IN_PROCESS_STATE,
  ]);
  await waitReady(
    {
      name: "in-process /healthz",
      request: () => fetch(`${inProcess}/healthz`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) }),
      correct: (body) => JSON.parse(body).ok === true,
    },
    READY_TIMEOUT_MS,
  );
  await useBenchTenant(inProcess, [edgeInProcess]);
  await waitReady(edge, FIRST_JOB_TIMEOUT_MS);
  await waitReady(edgeInProcess, READY_TIMEOUT_MS);
  console.log(
    `[bench] both up; ${WARMUP_REQUESTS} warm-up, ${SEQUENTIAL_REQUESTS} sequential, ` +
      `${THROUGHPUT_REQUESTS} at c=${CONCURRENCY} per target`,
  );

  // Targets without pauses take turns in blocks of BLOCK_REQUESTS, so a slow stretch of the machine
  // falls on all of them alike. Each block starts with BLOCK_WARMUP discarded requests: the first
  // requests after another process had the cores are slower (one request each in turn made every
  // target ≈ 5 ms slower, which flatters the ratios).
  const inTurns = targets.filter((target) => !target.pauseMs);
  for (const target of inTurns) {
    await sequential(target, WARMUP_REQUESTS);
    target.errors = [];
    target.samples = [];
  }
  for (let measured = 0; measured < SEQUENTIAL_REQUESTS; measured += BLOCK_REQUESTS) {
    for (const target of inTurns) {
      const errors = target.errors;
      await sequential(target, BLOCK_WARMUP);
      target.errors = errors;
      target.samples.push(...(await sequential(target, Math.min(BLOCK_REQUESTS, SEQUENTIAL_REQUESTS - measured))));
    }
  }
  // The cold node target starts a bare sandboxed Node in each of its pauses: the floor it is held to
  // is measured alongside it.
  const bareSpawnsMs = [];
  nodeCold.duringPause = () => {
    const spawnMs = bareSandboxSpawnMs();
    if (spawnMs !== undefined) bareSpawnsMs.push(spawnMs);
  };
  for (const target of targets.filter((target) => target.pauseMs)) {
    await sequential(target, WARMUP_REQUESTS);
    bareSpawnsMs.length = 0;
    target.errors = [];
    target.samples = await sequential(target, target.sequentialCount ?? SEQUENTIAL_REQUESTS);
  }
  for (const target of targets) {
    target.latenciesMs = target.samples.map((sample) => sample.ms);
    const burst =
      target.burst === false
        ? { requestsPerSecond: NaN, samples: [] }
        : await throughput(target, THROUGHPUT_REQUESTS, target.concurrency ?? CONCURRENCY);
    target.requestsPerSecond = burst.requestsPerSecond;
    target.burstSamples = burst.samples;
    console.log(`[bench] done: ${target.name}`);
  }

  const spawnP50Ms = bareSpawnsMs.length > 0 ? percentile(bareSpawnsMs, 50) : undefined;
  const report =
    formatReport(targets, [edge, edgeInProcess], bare) +
    formatNodeReport({ edge, nodeWarm, nodeCold, spawnP50Ms }) +
    (spawnP50Ms === undefined
      ? "\nbare `bwrap --unshare-all … node -e 0`: not measured (bwrap missing)\n"
      : `\nbare \`bwrap --unshare-all … node -e 0\` (the node path's floor): p50 ${fixed(spawnP50Ms)} ms over ${bareSpawnsMs.length} spawns, one in each pause of the cold node target\n`);
  console.log(`\n${report}`);
  await writeFile(join(RESULTS_DIR, "latest.md"), report);
  console.log("[bench] written to bench/results/latest.md");
}

/** A job target; its `key` is set by useBenchTenant once its dispatcher is up. */
function executionTarget(name, baseUrl, jobOf = () => ({ runtime: "edge", code: EDGE_CODE }), options = {}) {
  let sent = 0;
  const target = {
    name,
    key: undefined,
    ...options,
    request: () =>
      fetch(`${baseUrl}/v1/executions`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${target.key}` },
        body: JSON.stringify({ ...jobOf(sent++), input: INPUT }),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      }),
    correct: (body) => JSON.parse(body).output === EXPECTED,
  };
  return target;
}

/** Creates this run's bench tenant on a dispatcher through its admin API and gives its key to `targets`. */
async function useBenchTenant(baseUrl, targets) {
  const response = await fetch(`${baseUrl}/v1/admin/tenants`, {
    method: "POST",
    headers: { authorization: `Bearer ${loadDevVars().ADMIN_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify(BENCH_TENANT),
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  if (response.status !== 201)
    throw new Error(`bench tenant on ${baseUrl}: ${response.status} ${await response.text()}`);
  const { apiKey } = await response.json();
  for (const target of targets) target.key = apiKey.key;
}

/**
 * One request, timed from send to the last byte of the body; a non-200 or wrong answer is an error.
 * Returns the time and, for a node job, whether it started cold (its reply's metrics.coldStart).
 */
async function timed(target) {
  if (stopping) throw new Error("stopped before the end"); // by a signal or the deadline
  const startedMs = performance.now();
  let status = "no response";
  let body;
  try {
    const response = await target.request();
    status = response.status;
    body = await response.text();
  } catch (error) {
    body = error instanceof Error ? error.message : String(error);
  }
  const elapsedMs = performance.now() - startedMs;
  if (status !== 200 || !isCorrect(target, body)) (target.errors ??= []).push({ status, body });
  return { ms: elapsedMs, coldStart: coldStartOf(body) };
}

function coldStartOf(body) {
  try {
    const coldStart = JSON.parse(body).metrics?.coldStart;
    return typeof coldStart === "boolean" ? coldStart : undefined;
  } catch {
    return undefined;
  }
}

function isCorrect(target, body) {
  try {
    return target.correct(body);
  } catch {
    return false;
  }
}

async function sequential(target, count) {
  const samples = [];
  for (let i = 0; i < count; i++) {
    samples.push(await timed(target));
    if (target.pauseMs) {
      const pausedAt = performance.now();
      target.duringPause?.();
      const left = target.pauseMs - (performance.now() - pausedAt);
      if (left > 0) await new Promise((resolve) => setTimeout(resolve, left));
    }
  }
  return samples;
}

/** `concurrency` workers share one budget of `count` requests: requests per second, and every sample. */
async function throughput(target, count, concurrency) {
  let issued = 0;
  const samples = [];
  const worker = async () => {
    while (issued < count) {
      issued++;
      samples.push(await timed(target));
    }
  };
  const startedMs = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { requestsPerSecond: count / ((performance.now() - startedMs) / 1000), samples };
}

async function waitReady(target, timeoutMs) {
  const attempts = Math.ceil(timeoutMs / READY_POLL_MS);
  let last = "no response";
  for (let i = 0; i < attempts; i++) {
    const dead = children.find(({ child }) => child.exitCode !== null || child.signalCode !== null);
    if (dead) throw new Error(`${dead.name} exited before it was ready (see bench/results/${dead.name}.log)`);
    try {
      const response = await target.request();
      last = `${response.status} ${await response.text()}`;
      if (response.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, READY_POLL_MS));
  }
  throw new Error(`${target.name} not ready within ${timeoutMs} ms; last answer: ${last.slice(0, 500)}`);
}

function formatReport(targets, edges, bare) {
  const rows = targets.map((t) => {
    const measured = t.latenciesMs.length + t.burstSamples.length;
    const rate = t.burst === false ? "–" : `${fixed(t.requestsPerSecond, 0)} @ c=${t.concurrency ?? CONCURRENCY}`;
    return (
      `| ${t.name} | ${fixed(percentile(t.latenciesMs, 50))} | ${fixed(percentile(t.latenciesMs, 99))} | ` +
      `${rate} | ${t.errors.length} / ${measured} |`
    );
  });
  const ratios = edges.map((edge) => {
    const p50Ratio = percentile(edge.latenciesMs, 50) / percentile(bare.latenciesMs, 50);
    const rpsRatio = edge.requestsPerSecond / bare.requestsPerSecond;
    // Timings of failed requests (a fast 401, say) say nothing about the job path.
    const comparable = edge.errors.length === 0 && bare.errors.length === 0;
    const verdict = !comparable ? "INVALID, requests failed" : p50Ratio <= TARGET_P50_RATIO ? "met" : "NOT met";
    return `${edge.name} / floor: p50 ×${p50Ratio.toFixed(2)} (target ≤ ${TARGET_P50_RATIO}: ${verdict}), throughput ×${rpsRatio.toFixed(2)}`;
  });
  const lines = [
    "| target | p50 ms | p99 ms | req/s | errors |",
    "| --- | ---: | ---: | ---: | ---: |",
    ...rows,
    "",
    ...ratios,
    "",
    `n=${SEQUENTIAL_REQUESTS} sequential, ${THROUGHPUT_REQUESTS} at c=${CONCURRENCY}, ${WARMUP_REQUESTS} warm-up discarded; ` +
      `node ${process.version}, ${new Date().toISOString()}`,
  ];
  for (const t of targets.filter((t) => t.errors.length > 0)) {
    const { status, body } = t.errors[0];
    lines.push("", `first error from ${t.name}: ${status} ${body.slice(0, 500)}`);
  }
  return `${lines.join("\n")}\n`;
}

/** The node path against its targets: warm-pool hit ≤ 2× the edge job, cold ≤ 1.3× (bare spawn + edge job). */
function formatNodeReport({ edge, nodeWarm, nodeCold, spawnP50Ms }) {
  const p50Of = (samples, cold) =>
    percentile(
      samples.filter((s) => s.coldStart === cold).map((s) => s.ms),
      50,
    );
  const count = (samples, cold) => samples.filter((s) => s.coldStart === cold).length;
  const edgeP50 = percentile(edge.latenciesMs, 50);
  const warmP50 = p50Of(nodeWarm.samples, false);
  const coldP50 = p50Of(nodeCold.samples, true);
  const verdict = (value, bound) => (!Number.isFinite(value) ? "n/a" : value <= bound ? "met" : "NOT met");
  const lines = [
    "",
    `node path (sequential with ${NODE_PAUSE_MS} ms between requests, burst at c=${NODE_CONCURRENCY}):`,
    "",
    "| node measure | p50 ms | target | verdict |",
    "| --- | ---: | --- | --- |",
    `| warm-pool hit (${count(nodeWarm.samples, false)} of ${nodeWarm.samples.length} sequential jobs) | ${fixed(warmP50)} | ≤ 2 × edge p50 = ${fixed(2 * edgeP50)} | ${verdict(warmP50, 2 * edgeP50)} |`,
  ];
  if (spawnP50Ms !== undefined) {
    const bound = 1.3 * (spawnP50Ms + edgeP50);
    lines.push(
      `| cold start (${count(nodeCold.samples, true)} of ${nodeCold.samples.length} sequential jobs) | ${fixed(coldP50)} | ≤ 1.3 × (bare spawn ${fixed(spawnP50Ms)} + edge ${fixed(edgeP50)}) = ${fixed(bound)} | ${verdict(coldP50, bound)} |`,
    );
  }
  lines.push("", `kernel RCU expedited: ${rcuExpedited()} (see host/node/README.md, "Cold starts and the kernel")`);
  const burst = nodeWarm.burstSamples;
  lines.push(
    "",
    `under load (${THROUGHPUT_REQUESTS} jobs at c=${NODE_CONCURRENCY}, warm pool on): ${fixed(nodeWarm.requestsPerSecond, 1)} jobs/s, ` +
      `${count(burst, false)} warm hits and ${count(burst, true)} cold starts, p50 ${fixed(
        percentile(
          burst.map((s) => s.ms),
          50,
        ),
      )} ms, ` +
      `p99 ${fixed(
        percentile(
          burst.map((s) => s.ms),
          99,
        ),
      )} ms (refills wait for an idle slot, so a burst starts jobs cold instead of waiting)`,
  );
  return `${lines.join("\n")}\n`;
}

/** /sys/kernel/rcu_expedited ("0", "1"), or "unknown" where it cannot be read. */
function rcuExpedited() {
  try {
    return readFileSync("/sys/kernel/rcu_expedited", "utf8").trim();
  } catch {
    return "unknown";
  }
}

/** p50 of starting Node in a bare bubblewrap sandbox (private namespaces, read-only root), or undefined. */
/** One start of Node in a bare bubblewrap sandbox (private namespaces, read-only root), or undefined. */
function bareSandboxSpawnMs() {
  const args = ["--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"];
  const startedMs = performance.now();
  const run = spawnSync("bwrap", [...args, process.execPath, "-e", "0"], {
    stdio: "ignore",
    timeout: REQUEST_TIMEOUT_MS,
  });
  if (run.error || run.status !== 0) return undefined;
  return performance.now() - startedMs;
}

/** Nearest-rank percentile. */
function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)];
}

function fixed(value, digits = 2) {
  return Number.isFinite(value) ? value.toFixed(digits) : "n/a";
}

/**
 * Each child leads its own process group (detached) so that stopping it also stops what it spawned:
 * wrangler, workerd, the sandbox host and its runner processes.
 */
function start(name, command, args, env = {}) {
  const log = createWriteStream(join(RESULTS_DIR, `${name}.log`));
  const child = spawn(command, args, {
    cwd: ROOT,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: {
      ...process.env,
      ...env,
      // The repo's Node 24 and wrangler, also when run as `node bench/run.mjs` outside npm.
      PATH: `${join(ROOT, "node_modules", ".bin")}:${process.env.PATH}`,
      WRANGLER_SEND_METRICS: "false",
      // wrangler dev's local trace collector writes every span of every request to a SQLite file,
      // so it taxes each target by how many calls it makes (several ms per job here, see README);
      // production has nothing like it. Off for every target.
      X_LOCAL_OBSERVABILITY: "false",
    },
  });
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  children.push({ name, child });
  console.log(`[bench] started ${name} (process group ${child.pid}), output in bench/results/${name}.log`);
}

function stopAll() {
  stopping ??= Promise.all(children.map(({ child }) => stopGroup(child))).then(() =>
    rm(IN_PROCESS_STATE, { recursive: true, force: true }),
  );
  return stopping;
}

async function stopGroup(child) {
  if (child.pid === undefined) return;
  signalGroup(child.pid, "SIGTERM");
  const giveUpAt = Date.now() + STOP_GRACE_MS;
  while (signalGroup(child.pid, 0) && Date.now() < giveUpAt) await new Promise((r) => setTimeout(r, 100));
  signalGroup(child.pid, "SIGKILL");
}

/** Signals the whole group; false once no process of it is left. */
function signalGroup(pgid, signal) {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

/** Ports the OS says are free right now (bound to port 0, then released). */
async function freePorts(count) {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise((resolve, reject) => {
          const server = createServer();
          server.once("error", reject);
          server.listen(0, "127.0.0.1", () => resolve(server));
        }),
    ),
  );
  const ports = servers.map((server) => server.address().port);
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  return ports;
}

function positiveInt(text, flag) {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${flag} must be a positive integer, got ${text}`);
  return value;
}
