/**
 * Runs `node` jobs, each in a bubblewrap sandbox of its own (see README.md in this directory). A
 * sandbox serves one job and is destroyed, so one job can leave nothing behind for the next. It is
 * started for the job (a cold start) or taken from the warm pool, where, per trust cordon, a few wait
 * with their harness started. At most `maxConcurrent` jobs run at once; further jobs wait in FIFO order.
 * A job's npm packages are installed (or found in the cache) before it takes a slot.
 *
 * What the host can offer is probed once, at construction: the tools on PATH, the cgroup controllers it
 * may write, whether it runs as root (then every sandbox runs as an unprivileged uid instead).
 */
import { realpathSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { EarlyCancels } from "../early-cancels.ts";
import { WaitQueue } from "../wait-queue.ts";
import { CgroupRoot } from "./cgroup.ts";
import type { EgressRoutes } from "./egress-proxy.ts";
import { publicRoutes } from "./egress-routes.ts";
import {
  DEFAULT_CACHE_BYTES,
  DEFAULT_INSTALL_TIMEOUT_MS,
  DEFAULT_REGISTRY,
  PackageCache,
  findNpm,
  type PackageCacheStatus,
  type PackageLease,
} from "./package-cache.ts";
import { NODE_CORDONS, type NodeCordon, type NodeRunReply, type NodeRunRequest } from "./protocol.ts";
import { findTools, systemLayout } from "./sandbox-command.ts";
import { HAND_OFF_FAILED, SandboxJob, type ExtraMetrics } from "./sandbox-job.ts";
import { Sandbox, handOffLimitsOf, shapeOf, type JobEnvironment, type SandboxShape } from "./sandbox.ts";
import { WarmPool, type WarmPoolStatus } from "./warm-pool.ts";

const HARNESS = fileURLToPath(new URL("./harness.mjs", import.meta.url));
/** The conventional "nobody": owns nothing on the host. */
const DEFAULT_SANDBOX_ID = 65534;
/** An empty job cgroup this old belongs to no live sandbox (see CgroupRoot.sweep). */
const STALE_CGROUP_MS = 10 * 60_000;
/** How long `prewarm` waits for the pool to fill. */
const PREWARM_TIMEOUT_MS = 15_000;

export interface NodeRunnerOptions {
  /** Sandboxes running at once (default 4). */
  maxConcurrent?: number;
  /** Host uid/gid the sandbox runs as when the host is root (default 65534). */
  sandboxUid?: number;
  sandboxGid?: number;
  /** Where each job's code is staged before it is bound read-only into the sandbox (default os.tmpdir()). */
  stagingRoot?: string;
  /** Where to look for bwrap, prlimit, setpriv and sh (a PATH-style list; default PATH + system dirs). */
  toolPath?: string;
  /** false: never use cgroups, only the rlimit fallbacks (default true: use whatever is writable). */
  cgroups?: boolean;
  /** Warm sandboxes kept per trust cordon: one number for all, or per cordon (default 1; 0: cold starts only). */
  warmPerCordon?: number | Partial<Record<NodeCordon, number>>;
  /** Where installed package sets are cached (default <os.tmpdir()>/cordon-node-packages). */
  packageCacheRoot?: string;
  /** Bytes of cached package sets kept before the least recently used are removed (default 1 GiB). */
  packageCacheMaxBytes?: number;
  /** An npm install is stopped after this long (default 60 s). */
  installTimeoutMs?: number;
  /** The npm registry packages come from (default https://registry.npmjs.org/). */
  registry?: string;
  /** npm's package directory (holding bin/npm-cli.js); default: found from `npm` on PATH. */
  npmRoot?: string;
  /**
   * true: one cache entry per package set for all tenants (fewer installs; a tenant can then tell that
   * another used the same set). Default false: each tenant's sets are installed and cached apart.
   */
  sharePackagesAcrossTenants?: boolean;
  /** Where jobs' egress proxies send what they let through (default: the network, see egress-routes.ts). */
  egress?: EgressRoutes;
}

export interface NodeRunnerStatus {
  available: boolean;
  problem: string | undefined;
  cgroups: string[];
  running: number;
  waiting: number;
  warm: WarmPoolStatus | undefined;
  packages: PackageCacheStatus | undefined;
}

type InstallFailure = Extract<NodeRunReply, { ok: false }>;

export class NodeRunner {
  readonly #env: JobEnvironment | undefined;
  readonly #problem: string | undefined;
  readonly #maxConcurrent: number;
  /** Jobs waiting for a slot (what is handed over is the slot itself). */
  readonly #waiting = new WaitQueue<true>();
  readonly #jobs = new Map<string, SandboxJob>();
  /** Jobs installing packages or waiting for a slot, and whether they were cancelled meanwhile. */
  readonly #pending = new Map<string, boolean>();
  readonly #earlyCancels = new EarlyCancels();
  readonly #pool: WarmPool | undefined;
  readonly #packages: PackageCache | undefined;
  readonly #sharePackages: boolean;
  /** Sandboxes of finished jobs still being removed (close() waits for them). */
  readonly #cleanups = new Set<Promise<void>>();
  #running = 0;

  constructor(options: NodeRunnerOptions = {}) {
    this.#maxConcurrent = options.maxConcurrent ?? 4;
    this.#sharePackages = options.sharePackagesAcrossTenants ?? false;
    const { tools, missing } = findTools(options.toolPath);
    const root = process.getuid?.() === 0;
    if (!tools) {
      this.#problem = missing.includes("bwrap")
        ? "bubblewrap (bwrap) is not installed on the sandbox host: apt-get install -y bubblewrap"
        : `the sandbox host lacks ${missing.join(", ")} (util-linux / a POSIX shell)`;
      return;
    }
    if (root && !tools.setpriv) {
      this.#problem = "the sandbox host runs as root but setpriv (util-linux) is missing to drop privileges";
      return;
    }
    const cgroups = options.cgroups === false ? CgroupRoot.none() : CgroupRoot.detect();
    cgroups.sweep(STALE_CGROUP_MS);
    const env: JobEnvironment = {
      tools,
      cgroups,
      layout: systemLayout(),
      nodeBinary: realpathSync(process.execPath),
      harness: HARNESS,
      stagingRoot: options.stagingRoot ?? tmpdir(),
      dropTo: root
        ? { uid: options.sandboxUid ?? DEFAULT_SANDBOX_ID, gid: options.sandboxGid ?? DEFAULT_SANDBOX_ID }
        : undefined,
      egress: options.egress ?? publicRoutes(),
    };
    this.#env = env;
    this.#packages = new PackageCache({
      root: options.packageCacheRoot ?? join(tmpdir(), "cordon-node-packages"),
      maxBytes: options.packageCacheMaxBytes ?? DEFAULT_CACHE_BYTES,
      installTimeoutMs: options.installTimeoutMs ?? DEFAULT_INSTALL_TIMEOUT_MS,
      registry: options.registry ?? DEFAULT_REGISTRY,
      tools,
      nodeBinary: env.nodeBinary,
      npmRoot: options.npmRoot ?? findNpm(),
      layout: env.layout,
      dropTo: env.dropTo,
    });
    const packages = this.#packages;
    this.#pool = new WarmPool({
      perCordon: warmSizes(options.warmPerCordon),
      canRefill: () => this.#running < this.#maxConcurrent && this.#waiting.length === 0,
      start: (shape, limits) => {
        // A warm sandbox holds its own lease on its packages, so they stay cached while it waits.
        let lease: PackageLease | undefined;
        if (shape.packages) {
          lease = packages.retain(shape.packages.key);
          if (!lease) return undefined;
        }
        try {
          return new Sandbox(env, shape, limits, () => lease?.release());
        } catch (error) {
          lease?.release();
          throw error;
        }
      },
    });
  }

  get status(): NodeRunnerStatus {
    return {
      available: this.#env !== undefined,
      problem: this.#problem,
      cgroups: this.#env?.cgroups.controllers ?? [],
      running: this.#running,
      waiting: this.#waiting.length,
      warm: this.#pool?.status,
      packages: this.#packages?.status,
    };
  }

  async run(received: NodeRunRequest): Promise<NodeRunReply> {
    const env = this.#env;
    const pool = this.#pool;
    if (!env || !pool) return unavailable(this.#problem ?? "unavailable");
    const { executionId } = received;
    if (this.#earlyCancels.take(executionId)) return neverStarted("it was cancelled before it reached the host");
    if (this.#pending.has(executionId) || this.#jobs.has(executionId)) {
      return unavailable(`job ${executionId} is already here`);
    }
    // The job's time counts from here: installing and waiting for a slot use it up, so a job never
    // runs after the dispatcher has given it up.
    const deadline = Date.now() + received.timeoutMs;
    this.#pending.set(executionId, false);
    const extra: ExtraMetrics = {};
    let lease: PackageLease | undefined;
    let cancelled: boolean;
    let slot = false;
    try {
      if (received.packages && received.packages.length > 0) {
        const resolved = await this.#installFor(received.packages, received.tenantId);
        if (!resolved.ok) return resolved.reply;
        lease = resolved.lease;
        extra.installMs = resolved.installMs;
        extra.packageCache = resolved.outcome;
      }
      // A cancel or the deadline ends the wait for a slot (and an install that outlasted them, too).
      if (this.#pending.get(executionId) !== true) slot = await this.#acquire(executionId, deadline);
    } finally {
      cancelled = this.#pending.get(executionId) === true;
      this.#pending.delete(executionId);
    }
    const left = deadline - Date.now();
    if (!slot || cancelled || left <= 0) {
      lease?.release();
      if (slot) this.#release();
      return neverStarted(
        cancelled
          ? "it was cancelled while it waited"
          : "installing its packages and waiting for a sandbox used up its timeout",
      );
    }
    const request = left < received.timeoutMs ? { ...received, timeoutMs: left } : received;
    const sandboxes: Sandbox[] = [];
    try {
      const shape = shapeOf(request, lease && { key: lease.key, dir: lease.dir });
      const limits = handOffLimitsOf(request);
      const warm = pool.take(request.cordon ?? "high", shape, limits);
      if (warm) {
        sandboxes.push(warm);
        const reply = await this.#runIn(request, warm, true, { ...extra, coldStart: false }, received.timeoutMs);
        if (reply !== HAND_OFF_FAILED) return reply;
        // The warm sandbox could not take the job's limits (and is gone): start one the usual way.
      }
      let sandbox: Sandbox;
      try {
        sandbox = new Sandbox(env, shape, limits);
      } catch (error) {
        return unavailable(error instanceof Error ? error.message : String(error));
      }
      sandboxes.push(sandbox);
      const reply = await this.#runIn(request, sandbox, false, { ...extra, coldStart: true }, received.timeoutMs);
      return reply === HAND_OFF_FAILED ? unavailable("the sandbox did not take the job") : reply;
    } finally {
      // The reply goes now; the slot and the packages are held until the sandboxes' cgroups and
      // staging directories are gone, so that at most maxConcurrent of them exist at once.
      const cleanup = Promise.all(sandboxes.map((sandbox) => sandbox.destroy())).then(() => {
        this.#cleanups.delete(cleanup);
        lease?.release();
        this.#release();
        // After the reply has gone, and only if the runner is idle enough then.
        setImmediate(() => pool.refill());
      });
      this.#cleanups.add(cleanup);
    }
  }

  /**
   * Fills a cordon's pool with sandboxes of this request's shape (installing its packages if need be)
   * and waits until they are ready; false if the pool is disabled or they did not start in time.
   */
  async prewarm(request: NodeRunRequest): Promise<boolean> {
    const pool = this.#pool;
    if (!pool?.enabled) return false;
    let lease: PackageLease | undefined;
    if (request.packages && request.packages.length > 0) {
      const resolved = await this.#installFor(request.packages, request.tenantId);
      if (!resolved.ok) return false;
      lease = resolved.lease;
    }
    try {
      const shape: SandboxShape = shapeOf(request, lease && { key: lease.key, dir: lease.dir });
      return await pool.prewarm(request.cordon ?? "high", shape, handOffLimitsOf(request), PREWARM_TIMEOUT_MS);
    } finally {
      lease?.release();
    }
  }

  /**
   * Kills a running job's processes, or keeps a job that is installing or waiting for a slot from
   * starting; false when no such job is here yet (it is then refused if it arrives later: a refused
   * early start is cancelled right away, and its run may still be on its way).
   */
  cancel(executionId: string): boolean {
    const job = this.#jobs.get(executionId);
    if (job) {
      job.cancel();
      return true;
    }
    if (this.#pending.has(executionId)) {
      this.#pending.set(executionId, true);
      this.#waiting.leave(executionId);
      return true;
    }
    this.#earlyCancels.remember(executionId);
    return false;
  }

  /**
   * Destroys the warm sandboxes, stops installs in flight and waits for finished jobs' sandboxes to be
   * removed; running jobs finish on their own.
   */
  async close(): Promise<void> {
    this.#packages?.close();
    await Promise.all([this.#pool?.close(), ...this.#cleanups]);
  }

  /** The set for this tenant's jobs (or everyone's, when the host shares sets across tenants). */
  async #installFor(
    specs: string[],
    tenantId: string | undefined,
  ): Promise<
    | { ok: true; lease: PackageLease; installMs: number; outcome: ExtraMetrics["packageCache"] }
    | { ok: false; reply: InstallFailure }
  > {
    if (!this.#packages) return { ok: false, reply: unavailable(this.#problem ?? "unavailable") };
    const scope = this.#sharePackages ? "all-tenants" : `tenant:${tenantId ?? ""}`;
    const resolved = await this.#packages.acquire(specs, scope);
    if (!resolved.ok) {
      return {
        ok: false,
        reply: {
          ok: false,
          error: { code: "SANDBOX_UNAVAILABLE", message: resolved.message, installError: resolved.error },
        },
      };
    }
    return { ok: true, lease: resolved.lease, installMs: resolved.installMs, outcome: resolved.outcome };
  }

  async #runIn(
    request: NodeRunRequest,
    sandbox: Sandbox,
    warm: boolean,
    extra: ExtraMetrics,
    statedTimeoutMs: number,
  ): Promise<NodeRunReply | typeof HAND_OFF_FAILED> {
    const job = new SandboxJob(request, sandbox, warm, statedTimeoutMs);
    this.#jobs.set(request.executionId, job);
    try {
      return await job.run(extra);
    } finally {
      if (this.#jobs.get(request.executionId) === job) this.#jobs.delete(request.executionId);
    }
  }

  /** A slot for the job; false if it is cancelled (see cancel) or its deadline passes first. */
  async #acquire(executionId: string, deadline: number): Promise<boolean> {
    if (Date.now() >= deadline) return false;
    if (this.#running < this.#maxConcurrent) {
      this.#running++;
      return true;
    }
    return "granted" in (await this.#waiting.wait(executionId, deadline));
  }

  #release(): void {
    if (!this.#waiting.handOver(true)) this.#running--;
  }
}

function unavailable(message: string): InstallFailure {
  return { ok: false, error: { code: "SANDBOX_UNAVAILABLE", message } };
}

function neverStarted(why: string): InstallFailure {
  return unavailable(`the job never started: ${why}`);
}

/** The pool size of every cordon: `sizes` for all of them, or the cordons it names (the others: 1). */
export function warmSizes(sizes: NodeRunnerOptions["warmPerCordon"]): Record<NodeCordon, number> {
  const all = typeof sizes === "number" ? sizes : 1;
  const named = typeof sizes === "object" ? sizes : {};
  return Object.fromEntries(NODE_CORDONS.map((cordon) => [cordon, named[cordon] ?? all])) as Record<NodeCordon, number>;
}
