/**
 * Runs `node` jobs, each in a fresh bubblewrap sandbox (see README.md in this directory). There is no
 * pool: a sandbox is cheap to start and never reused, so one job can leave nothing behind for the next.
 * At most `maxConcurrent` sandboxes run at once; further jobs wait in FIFO order.
 *
 * What the host can offer is probed once, at construction: the tools on PATH, the cgroup controllers it
 * may write, whether it runs as root (then every sandbox runs as an unprivileged uid instead).
 */
import { realpathSync } from "node:fs";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import { CgroupRoot } from "./cgroup.ts";
import type { NodeRunReply, NodeRunRequest } from "./protocol.ts";
import { findTools, systemLayout } from "./sandbox-command.ts";
import { SandboxJob, type JobEnvironment } from "./sandbox-job.ts";

const HARNESS = fileURLToPath(new URL("./harness.mjs", import.meta.url));
/** The conventional "nobody": owns nothing on the host. */
const DEFAULT_SANDBOX_ID = 65534;

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
}

export interface NodeRunnerStatus {
  available: boolean;
  problem: string | undefined;
  cgroups: string[];
  running: number;
  waiting: number;
}

export class NodeRunner {
  readonly #env: JobEnvironment | undefined;
  readonly #problem: string | undefined;
  readonly #maxConcurrent: number;
  readonly #waiting: (() => void)[] = [];
  readonly #jobs = new Map<string, SandboxJob>();
  #running = 0;

  constructor(options: NodeRunnerOptions = {}) {
    this.#maxConcurrent = options.maxConcurrent ?? 4;
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
    this.#env = {
      tools,
      cgroups: options.cgroups === false ? CgroupRoot.none() : CgroupRoot.detect(),
      layout: systemLayout(),
      nodeBinary: realpathSync(process.execPath),
      harness: HARNESS,
      stagingRoot: options.stagingRoot ?? tmpdir(),
      dropTo: root
        ? { uid: options.sandboxUid ?? DEFAULT_SANDBOX_ID, gid: options.sandboxGid ?? DEFAULT_SANDBOX_ID }
        : undefined,
    };
  }

  get status(): NodeRunnerStatus {
    return {
      available: this.#env !== undefined,
      problem: this.#problem,
      cgroups: this.#env?.cgroups.controllers ?? [],
      running: this.#running,
      waiting: this.#waiting.length,
    };
  }

  async run(request: NodeRunRequest): Promise<NodeRunReply> {
    const env = this.#env;
    if (!env) return { ok: false, error: { code: "SANDBOX_UNAVAILABLE", message: this.#problem ?? "unavailable" } };
    await this.#acquire();
    const job = new SandboxJob(env, request);
    this.#jobs.set(request.executionId, job);
    try {
      return await job.run();
    } finally {
      this.#jobs.delete(request.executionId);
      this.#release();
    }
  }

  /** Kills a running job's processes; false when no such job runs here. */
  cancel(executionId: string): boolean {
    const job = this.#jobs.get(executionId);
    job?.cancel();
    return job !== undefined;
  }

  #acquire(): Promise<void> {
    if (this.#running < this.#maxConcurrent) {
      this.#running++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  #release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#running--;
  }
}
