/**
 * Warm sandboxes: per trust cordon, up to N sandboxes already started, their harness waiting for its
 * setup, so a job skips bwrap's and Node's start-up (see README.md, "Warm sandboxes").
 *
 * - Single use, at every level: `take` removes the sandbox from the pool for good; the job destroys it
 *   when it ends, and a fresh one is started later. A sandbox never sees two jobs, so it never carries
 *   anything from one tenant or job to the next, and the pool needs no per-tenant key.
 * - Per cordon: a burst of `untrusted` jobs cannot use up the `high` cordon's sandboxes, and a sandbox
 *   started for one cordon is never handed to a job of another. Each cordon has its own size.
 * - A job can only use a sandbox of its own shape (memoryMb, writable paths, packages: what is fixed at
 *   start). Each cordon keeps sandboxes of the shape of its latest job; a job of another shape starts
 *   cold and the cordon switches to its shape.
 * - Refills run one at a time, only when the runner has a free slot and no job waiting (`canRefill`),
 *   and only after a job's reply has gone. Under a burst, jobs start cold rather than wait for a refill.
 */
import type { NodeCordon } from "./protocol.ts";
import { NODE_CORDONS } from "./protocol.ts";
import { shapeKey, type HandOffLimits, type Sandbox, type SandboxShape } from "./sandbox.ts";

/** A sandbox whose harness has not said it is waiting by then is given up (and destroyed). */
const WARM_START_TIMEOUT_MS = 10_000;
/** After a warm sandbox fails to start, its cordon is not refilled for this long. */
const FAILURE_BACKOFF_MS = 5_000;

export interface WarmPoolOptions {
  /** Sandboxes kept ready, per cordon; 0 disables the pool for that cordon. */
  perCordon: Record<NodeCordon, number>;
  /** Starts a sandbox of this shape with these rlimits, or undefined (e.g. its packages were evicted). */
  start: (shape: SandboxShape, limits: HandOffLimits) => Sandbox | undefined;
  /** Whether the runner is idle enough to spend a sandbox start-up on a refill. */
  canRefill: () => boolean;
}

export interface WarmCordonStatus {
  /** Waiting for a job. */
  ready: number;
  /** Started, harness not waiting yet. */
  starting: number;
}

export interface WarmPoolStatus {
  perCordon: Record<NodeCordon, number>;
  cordons: Record<NodeCordon, WarmCordonStatus>;
  /** Jobs handed a warm sandbox; jobs that started cold while the pool was enabled. */
  hits: number;
  misses: number;
  /** Warm sandboxes started, and those destroyed without serving a job (shape change, close, failure). */
  started: number;
  discarded: number;
}

interface CordonPool {
  shape: SandboxShape | undefined;
  key: string | undefined;
  /** The rlimits of the cordon's latest job: new sandboxes start with them, so most hand-offs change nothing. */
  limits: HandOffLimits | undefined;
  sandboxes: Sandbox[];
  retryAt: number;
}

export class WarmPool {
  readonly #options: WarmPoolOptions;
  readonly #cordons = new Map<NodeCordon, CordonPool>();
  #starting: Sandbox | undefined;
  #closed = false;
  readonly #stats = { hits: 0, misses: 0, started: 0, discarded: 0 };
  /** Resolved whenever a sandbox becomes ready or fails (prewarm waits on these). */
  #changed: (() => void)[] = [];

  constructor(options: WarmPoolOptions) {
    this.#options = options;
    for (const cordon of NODE_CORDONS) {
      this.#cordons.set(cordon, { shape: undefined, key: undefined, limits: undefined, sandboxes: [], retryAt: 0 });
    }
  }

  get enabled(): boolean {
    return NODE_CORDONS.some((cordon) => this.#options.perCordon[cordon] > 0) && !this.#closed;
  }

  get status(): WarmPoolStatus {
    const cordons = {} as Record<NodeCordon, WarmCordonStatus>;
    for (const [cordon, pool] of this.#cordons) {
      const ready = pool.sandboxes.filter((sandbox) => sandbox.ready).length;
      cordons[cordon] = { ready, starting: pool.sandboxes.length - ready };
    }
    return { perCordon: { ...this.#options.perCordon }, cordons, ...this.#stats };
  }

  /**
   * A ready sandbox of this shape for a job of this cordon, removed from the pool for good; or undefined
   * (the job starts cold). Either way the cordon now follows this job's shape and rlimits.
   */
  take(cordon: NodeCordon, shape: SandboxShape, limits: HandOffLimits): Sandbox | undefined {
    if (!this.enabled || this.#options.perCordon[cordon] === 0) return undefined;
    const pool = this.#pool(cordon);
    this.#target(pool, shape, limits);
    const index = pool.sandboxes.findIndex((sandbox) => sandbox.ready);
    const sandbox = index === -1 ? undefined : pool.sandboxes.splice(index, 1)[0];
    if (sandbox) this.#stats.hits++;
    else this.#stats.misses++;
    return sandbox;
  }

  /** Starts one sandbox for the cordon that lacks the most, if the runner is idle enough. */
  refill(force = false): void {
    if (!this.enabled || this.#starting) return;
    if (!force && !this.#options.canRefill()) return;
    const now = Date.now();
    let neediest: CordonPool | undefined;
    for (const [cordon, pool] of this.#cordons) {
      if (!pool.shape || !pool.limits || pool.retryAt > now) continue;
      if (pool.sandboxes.length >= this.#options.perCordon[cordon]) continue;
      if (!neediest || pool.sandboxes.length < neediest.sandboxes.length) neediest = pool;
    }
    const pool = neediest;
    const shape = pool?.shape;
    const limits = pool?.limits;
    if (!pool || !shape || !limits) return;
    let sandbox: Sandbox | undefined;
    try {
      sandbox = this.#options.start(shape, limits);
    } catch {
      sandbox = undefined;
    }
    if (!sandbox) {
      pool.retryAt = now + FAILURE_BACKOFF_MS;
      this.#notify();
      return;
    }
    const started = sandbox;
    this.#stats.started++;
    this.#starting = started;
    pool.sandboxes.push(started);
    const timer = setTimeout(() => started.kill(), WARM_START_TIMEOUT_MS);
    void started.waiting.then((ready) => {
      clearTimeout(timer);
      if (this.#starting === started) this.#starting = undefined;
      // Not ready and still pooled: it failed on its own (a discarded one was destroyed on purpose).
      if (!ready && pool.sandboxes.includes(started)) {
        this.#discard(pool, started);
        pool.retryAt = Date.now() + FAILURE_BACKOFF_MS;
      }
      this.#notify();
      // One at a time: the next refill (of this cordon or another) starts once this one is up.
      this.refill();
    });
    // A sandbox that dies while it waits (killed from outside, or at close) leaves the pool.
    void started.exited.then(() => this.#discard(pool, started));
  }

  /**
   * Points the cordon at this shape and these rlimits (sandboxes started with other rlimits are
   * replaced) and starts sandboxes, regardless of load, until it has its cordon's size of ready ones; true if it
   * got there within `timeoutMs`. For a host's start-up, and for tests.
   */
  async prewarm(cordon: NodeCordon, shape: SandboxShape, limits: HandOffLimits, timeoutMs: number): Promise<boolean> {
    if (!this.enabled || this.#options.perCordon[cordon] === 0) return false;
    const pool = this.#pool(cordon);
    this.#target(pool, shape, limits);
    pool.limits = limits;
    const wanted = JSON.stringify(limits);
    for (const sandbox of [...pool.sandboxes]) {
      if (JSON.stringify(sandbox.startLimits) !== wanted) this.#discard(pool, sandbox);
    }
    pool.retryAt = 0;
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const ready = pool.sandboxes.filter((sandbox) => sandbox.ready).length;
      if (ready >= this.#options.perCordon[cordon]) return true;
      if (this.#closed || performance.now() > deadline || pool.retryAt > Date.now()) return false;
      const changed = new Promise<void>((resolve) => this.#changed.push(resolve));
      this.refill(true);
      await Promise.race([changed, sleep(Math.max(0, deadline - performance.now()))]);
    }
  }

  /** Destroys every waiting sandbox and starts no more. */
  async close(): Promise<void> {
    this.#closed = true;
    const all = [...this.#cordons.values()].flatMap((pool) => pool.sandboxes.splice(0));
    this.#stats.discarded += all.length;
    this.#notify();
    await Promise.all(all.map((sandbox) => sandbox.destroy()));
  }

  #pool(cordon: NodeCordon): CordonPool {
    const pool = this.#cordons.get(cordon);
    if (!pool) throw new Error(`unknown cordon ${cordon}`);
    return pool;
  }

  /**
   * The cordon's sandboxes are of its latest job's shape (others are destroyed), and start with the
   * highest rlimits its jobs of that shape have had: a hand-off can lower an rlimit but not raise it
   * (see Sandbox.setLimits), and when every job has the same limits no hand-off changes anything.
   */
  #target(pool: CordonPool, shape: SandboxShape, limits: HandOffLimits): void {
    const key = shapeKey(shape);
    const previous = pool.key === key ? pool.limits : undefined;
    pool.limits = previous
      ? {
          openFiles: Math.max(previous.openFiles, limits.openFiles),
          fileSize: Math.max(previous.fileSize, limits.fileSize),
          cpuSeconds: Math.max(previous.cpuSeconds, limits.cpuSeconds),
          // pids.max is a cgroup file the host writes either way: the latest job's value.
          maxTasks: limits.maxTasks,
        }
      : limits;
    if (pool.key === key) return;
    pool.shape = shape;
    pool.key = key;
    for (const sandbox of pool.sandboxes.splice(0)) {
      this.#stats.discarded++;
      void sandbox.destroy();
    }
  }

  #discard(pool: CordonPool, sandbox: Sandbox): void {
    const index = pool.sandboxes.indexOf(sandbox);
    if (index === -1) return;
    pool.sandboxes.splice(index, 1);
    this.#stats.discarded++;
    void sandbox.destroy();
  }

  #notify(): void {
    for (const resolve of this.#changed.splice(0)) resolve();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
