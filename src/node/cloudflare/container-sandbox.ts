/**
 * The production home of node jobs: a Cloudflare Sandbox container (@cloudflare/sandbox 0.12) per job.
 *
 * One sandbox per job, named after its executionId (so no sandbox ever serves two jobs, let alone two
 * tenants), destroyed when the job ends or is cancelled. The adapter writes the job's code and setup into
 * it, runs job-script.ts's command (the same harness as the local home, under the limits a container can
 * enforce), and builds the same NodeRunReply as the local sandbox host from what a root process in the
 * container measured. Which limit fired is decided here, from the exit status, the kernel's counters and
 * the guard's verdict, in the local host's order; never from what the job's process says.
 *
 * What the container enforces, and what only its instance type bounds, is in container/README.md.
 */
import { getSandbox, type Sandbox } from "@cloudflare/sandbox";
import {
  LIMIT_HITS,
  NodeRunRequest,
  type NodeCordon,
  type CallOutcome,
  type ErrorInfo,
  type LimitHit,
  type NodeRunReply,
  type NodeRunReport,
  recordsBudget,
  type RecordBounds,
} from "../protocol";
import {
  parseContainerOutput,
  parseRecords,
  streamText,
  type ContainerOutcome,
  type JobRecords,
} from "./container-output";
import { CONTAINER_PATHS, SETUP_FAILED_STATUS, jobCommand, jobEnvironment, type JobPlan } from "./job-script";
import { describeExitStatus } from "../exit-status";
import type { NodeSandbox } from "../node-sandbox";
import { OUTPUT_TOO_LARGE_ERROR } from "../../untrusted-output";
import type { PoolLease, SandboxPoolApi, SandboxStarter } from "../../durable/sandbox-pool";

/** The part of the SDK's sandbox stub the adapter uses; the tests drive a fake of exactly this. */
export type SandboxLike = Pick<Sandbox, "writeFile" | "exec" | "destroy">;
/** Returns the sandbox for a sandbox id (getSandbox in production). */
export type OpenSandbox = (sandboxId: string) => SandboxLike;

export interface ContainerNodeSandboxOptions {
  /** Where the image keeps the harness and Node (defaults: container/Dockerfile's paths). */
  harnessPath?: string;
  nodePath?: string;
  /**
   * Give the job its own network namespace (only loopback), as the local home does. Needs CAP_SYS_ADMIN
   * in the container; without it every job answers SANDBOX_UNAVAILABLE saying so. Default true.
   */
  isolateNetwork?: boolean;
  /** Runs the sandbox's teardown after the reply (e.g. ctx.waitUntil); by default the reply waits for it. */
  waitUntil?: (promise: Promise<unknown>) => void;
  /** The cordon's warm pool (src/durable/sandbox-pool.ts); without it every job starts a fresh sandbox. */
  pool?: { cordon: NodeCordon; stub: Pick<SandboxPoolApi, "take" | "sandboxOf" | "finished"> };
}

const MiB = 1024 * 1024;
/** stdout and stderr are each kept up to this size (as on the local host). */
const STREAM_CAP_BYTES = 64 * 1024;
/**
 * At most this much of records comes back over the exec, whatever the budget: the result travels as one
 * base64 string through the Sandbox Durable Object to the dispatcher, each with 128 MB of memory.
 */
const RECORDS_HARD_CAP_BYTES = 16 * MiB;
/** The script's own work around the job (sealing paths, counting files, encoding), on a fractional vCPU. */
const EXEC_MARGIN_MS = 15_000;
/** A container that has not run its first command by then is not kept in the pool. */
const BOOT_TIMEOUT_MS = 60_000;
/** The SDK leaves bounding destroy() to its caller (it can hang on an unresponsive control plane). */
const DESTROY_TIMEOUT_MS = 30_000;
/** How often the script's guard counts the job's processes and files. */
const POLL_MS = 100;
/**
 * RLIMIT_NPROC counts threads, and a Node process runs up to 11. The budget is the local host's pids.max
 * (whose base is bwrap's two processes), so a job that fits in one home fits in the other.
 */
const TASKS_PER_NODE_PROCESS = 12;
const BASE_TASKS = 2;
/** GNU timeout's status when it stops a command with its default signal; with -s KILL it is 128 + 9. */
const TIMEOUT_STATUS = 124;
const HEAP_EXHAUSTED = /Reached heap limit|JavaScript heap out of memory|Allocation failed/;
/**
 * The sandbox is destroyed after each job; should that fail, it stops after a minute without requests.
 * No default session: each call runs outside the SDK's persistent shell, which the job never needs.
 */
const SANDBOX_OPTIONS = { keepAlive: false, sleepAfter: "1m", enableDefaultSession: false } as const;

/** The production home: sandboxes from the Sandbox Durable Object namespace bound to the Worker. */
export function containerNodeSandbox<T extends Sandbox<Env>>(
  namespace: DurableObjectNamespace<T>,
  options: ContainerNodeSandboxOptions = {},
): NodeSandbox {
  return nodeSandboxOn((sandboxId) => getSandbox(namespace, sandboxId, SANDBOX_OPTIONS), options);
}

/** Boots and destroys pooled sandboxes of one Sandbox namespace, for the cordon's SandboxPool. */
export function containerStarter<T extends Sandbox<Env>>(namespace: DurableObjectNamespace<T>): SandboxStarter {
  return sandboxStarterOn((sandboxId) => getSandbox(namespace, sandboxId, SANDBOX_OPTIONS));
}

/** The starter on any source of sandboxes: a sandbox is warm once its container has run a command. */
export function sandboxStarterOn(open: (sandboxId: string) => Pick<Sandbox, "exec" | "destroy">): SandboxStarter {
  return {
    async warm(sandboxId) {
      const booted = await open(sandboxId).exec("true", { timeout: BOOT_TIMEOUT_MS });
      if (booted.exitCode !== 0) throw new Error(`the sandbox's first command exited with ${booted.exitCode}`);
    },
    destroy: (sandboxId) => destroy(open(sandboxId)),
  };
}

/** The same home on any source of sandboxes (the tests pass a fake). */
export function nodeSandboxOn(open: OpenSandbox, options: ContainerNodeSandboxOptions = {}): NodeSandbox {
  return new ContainerNodeSandbox(open, options);
}

class ContainerNodeSandbox implements NodeSandbox {
  readonly #open: OpenSandbox;
  readonly #options: ContainerNodeSandboxOptions;

  constructor(open: OpenSandbox, options: ContainerNodeSandboxOptions) {
    this.#open = open;
    this.#options = options;
  }

  async run(input: NodeRunRequest): Promise<NodeRunReply> {
    const parsed = NodeRunRequest.safeParse(input);
    if (!parsed.success) return unavailable(`the node job request is not valid: ${parsed.error.message}`);
    const request = parsed.data;
    if (request.packages?.length) {
      return {
        ok: false,
        error: {
          code: "SANDBOX_UNAVAILABLE",
          message: "the container home does not install npm packages",
          installError: { reason: "unavailable", detail: "packages are not supported by the container home" },
        },
      };
    }
    let sandbox: SandboxLike;
    let lease: PoolLease;
    try {
      lease = await this.#lease(request.executionId);
      sandbox = this.#open(lease.sandboxId);
    } catch (error) {
      return unavailable(`no sandbox for the job: ${describe(error)}`);
    }
    try {
      const reply = await this.#runIn(sandbox, request);
      if (reply.ok) reply.report.metrics.coldStart = !lease.warm;
      return reply;
    } finally {
      const teardown = destroy(sandbox).then(() => this.#finished(request.executionId));
      if (this.#options.waitUntil) this.#options.waitUntil(teardown);
      else await teardown;
    }
  }

  /** The job's sandbox: from the cordon's pool when there is one, else named after the job. */
  async #lease(executionId: string): Promise<PoolLease> {
    const pool = this.#options.pool;
    if (!pool) return { sandboxId: await sandboxIdFor(executionId), warm: false };
    return pool.stub.take(pool.cordon, executionId);
  }

  async #sandboxOf(executionId: string): Promise<string> {
    const pool = this.#options.pool;
    const pooled = pool ? await pool.stub.sandboxOf(pool.cordon, executionId) : undefined;
    return pooled ?? sandboxIdFor(executionId);
  }

  async #finished(executionId: string): Promise<void> {
    const pool = this.#options.pool;
    await pool?.stub.finished(pool.cordon, executionId).catch(() => undefined);
  }

  async cancel(executionId: string): Promise<void> {
    // destroy() alone: it kills every process with the container and never starts a stopped one, which
    // any other call (killAllProcesses included) would do; the job's exec is not an SDK process anyway.
    try {
      await destroy(this.#open(await this.#sandboxOf(executionId)));
      await this.#finished(executionId);
    } catch {
      // best effort, like the local home's cancel
    }
  }

  async #runIn(sandbox: SandboxLike, request: NodeRunRequest): Promise<NodeRunReply> {
    const nonce = randomHex(16);
    const bounds = {
      inputs: request.inputs.length,
      maxLogEntries: request.maxLogEntries,
      maxLogBytes: request.maxLogBytes,
      maxOutputBytes: request.maxOutputBytes,
    };
    const plan = this.#plan(request, bounds);
    // What the local host writes to the harness's fd 4, field for field.
    const setup = {
      nonce,
      executionId: request.executionId,
      inputs: request.inputs,
      captureConsole: request.captureConsole,
      maxLogEntries: request.maxLogEntries,
      maxLogBytes: request.maxLogBytes,
      maxOutputBytes: request.maxOutputBytes,
    };
    try {
      await written(sandbox.writeFile(CONTAINER_PATHS.jobFile, request.code), CONTAINER_PATHS.jobFile);
      await written(sandbox.writeFile(CONTAINER_PATHS.setupFile, JSON.stringify(setup)), CONTAINER_PATHS.setupFile);
    } catch (error) {
      return unavailable(`could not write the job into its container: ${describe(error)}`);
    }
    const execTimeoutMs = request.timeoutMs + EXEC_MARGIN_MS;
    const started = Date.now();
    let result: Awaited<ReturnType<SandboxLike["exec"]>>;
    try {
      result = await sandbox.exec(jobCommand(), { timeout: execTimeoutMs, env: jobEnvironment(plan), cwd: "/" });
    } catch (error) {
      const elapsed = Date.now() - started;
      // The script kills the job at timeoutMs itself; reaching the exec's own bound means the container
      // was too starved or stuck to answer, and the job did not finish within its timeout either way.
      if (elapsed >= execTimeoutMs) return timedOutWithoutReport(request, elapsed);
      return unavailable(`the container could not run the job: ${describe(error)}`);
    }
    if (result.exitCode === SETUP_FAILED_STATUS) {
      return unavailable(`the container could not run the job: ${result.stderr.slice(0, 2048).trim()}`);
    }
    const outcome = parseContainerOutput(result.stdout, {
      recordsBytes: plan.recordsCapBytes,
      streamBytes: plan.streamCapBytes,
    });
    if ("refused" in outcome) {
      return unavailable(
        `the container's reply was refused (exit status ${result.exitCode}): ${outcome.refused}. ${result.stderr.slice(0, 512).trim()}`.trim(),
      );
    }
    return report(request, outcome, parseRecords(outcome.records.kept, nonce, bounds));
  }

  #plan(request: NodeRunRequest, bounds: RecordBounds): JobPlan {
    const limits = request.limits;
    return {
      timeoutMs: request.timeoutMs,
      cpuSeconds: Math.ceil(cpuLimitMs(request) / 1000),
      memoryMb: request.memoryMb,
      maxFileSize: limits.maxFileSize,
      maxFileDescriptors: limits.maxFileDescriptors,
      maxTasks: BASE_TASKS + TASKS_PER_NODE_PROCESS * (1 + limits.maxSubprocesses),
      maxProcesses: 1 + limits.maxSubprocesses,
      maxFiles: limits.maxFiles,
      writable: limits.writable,
      recordsCapBytes: Math.min(RECORDS_HARD_CAP_BYTES, recordsBudget(bounds)),
      streamCapBytes: STREAM_CAP_BYTES,
      pollMs: POLL_MS,
      isolateNetwork: this.#options.isolateNetwork ?? true,
      harness: this.#options.harnessPath ?? CONTAINER_PATHS.harness,
      node: this.#options.nodePath ?? CONTAINER_PATHS.node,
    };
  }
}

function report(request: NodeRunRequest, outcome: ContainerOutcome, records: JobRecords): NodeRunReply {
  const stderr = streamText(outcome.stderr);
  const limitHit = classify(request, outcome, records, stderr);
  if (!records.ready && limitHit === null) {
    return unavailable(
      `the job's Node process did not start (${describeStatus(outcome.status)}): ${stderr.slice(0, 2048).trim()}`,
    );
  }
  const recordsCut = outcome.records.total > outcome.records.kept.length;
  const calls: CallOutcome[] = records.calls.map(
    (call, index) => call ?? { ok: false, error: unfinished(index, limitHit, outcome.status, recordsCut) },
  );
  const metrics: NodeRunReport["metrics"] = {
    runMs: outcome.wallMs,
    cpuTimeMs: outcome.cpuMs,
    peakMemoryMb: Math.round(((records.done?.maxRssKb ?? 0) / 1024) * 10) / 10,
    filesWritten: outcome.files,
    coldStart: true,
  };
  return {
    ok: true,
    report: {
      calls,
      logs: records.logs,
      logBytes: records.logBytes,
      logsDropped: records.logsDropped,
      stdout: streamText(outcome.stdout),
      stderr,
      metrics,
      limitHit,
    },
  };
}

/**
 * Which limit fired, in the local host's order: what was stopped from outside (the guard, the wall
 * clock), then the kernel's own verdicts (OOM kill, signals), then the errno of an error the job let
 * escape, an rlimit's only trace.
 */
function classify(
  request: NodeRunRequest,
  outcome: ContainerOutcome,
  records: JobRecords,
  stderr: string,
): LimitHit | null {
  const limits = request.limits;
  if (outcome.stopped === "processes") return LIMIT_HITS.subprocesses(limits.maxSubprocesses);
  if (outcome.stopped === "files" || outcome.files > limits.maxFiles) {
    return {
      code: "SANDBOX_SECURITY_VIOLATION",
      limit: "limits.maxFiles",
      message: `the job created ${outcome.files} files and directories in its writable paths; the limit is ${limits.maxFiles}`,
    };
  }
  const signal = signalOf(outcome.status);
  const finished = records.done !== undefined;
  if (!finished && (outcome.status === TIMEOUT_STATUS || signal === "SIGKILL") && outcome.wallMs >= request.timeoutMs) {
    return timeoutHit(request.timeoutMs);
  }
  if (outcome.oomKills > 0 || HEAP_EXHAUSTED.test(stderr)) {
    return {
      code: "SANDBOX_MEMORY_LIMIT",
      limit: "memoryMb",
      message: `the job used more than its ${request.memoryMb} MB of memory and was killed`,
    };
  }
  const cpuMs = cpuLimitMs(request);
  if (signal === "SIGXCPU" || (!finished && signal === "SIGKILL" && outcome.cpuMs >= cpuMs)) {
    return {
      code: "SANDBOX_TIMEOUT",
      limit: "cpuTimeMs",
      message: `the job used more than its ${cpuMs} ms of CPU time and was killed`,
    };
  }
  const codes = records.errorCodes;
  if (codes.has("EAGAIN")) return LIMIT_HITS.subprocesses(limits.maxSubprocesses);
  if (signal === "SIGXFSZ" || codes.has("EFBIG")) return LIMIT_HITS.fileSize(limits.maxFileSize);
  if (codes.has("EMFILE")) return LIMIT_HITS.fileDescriptors(limits.maxFileDescriptors);
  if (codes.has("ENOSPC")) {
    return {
      code: "SANDBOX_MEMORY_LIMIT",
      limit: "limits.writable",
      message: "a writable path is full: the container's disk, which its instance type bounds, has no room left",
    };
  }
  return null;
}

function timeoutHit(timeoutMs: number): LimitHit {
  return {
    code: "SANDBOX_TIMEOUT",
    limit: "timeoutMs",
    message: `the job ran past its timeout of ${timeoutMs} ms and was killed`,
  };
}

function cpuLimitMs(request: NodeRunRequest): number {
  return request.cpuTimeMs ?? request.timeoutMs;
}

/** The exec did not return within its own bound: every call is reported as timed out, with nothing else. */
function timedOutWithoutReport(request: NodeRunRequest, elapsedMs: number): NodeRunReply {
  const hit = timeoutHit(request.timeoutMs);
  return {
    ok: true,
    report: {
      calls: request.inputs.map((_, index) => ({ ok: false, error: unfinished(index, hit, 0, false) })),
      logs: [],
      logBytes: 0,
      logsDropped: 0,
      stdout: "",
      stderr: "",
      metrics: { runMs: elapsedMs, cpuTimeMs: 0, peakMemoryMb: 0, filesWritten: 0, coldStart: true },
      limitHit: hit,
    },
  };
}

/** Linux signal numbers (x86-64 and arm64 agree on these) of the deaths worth naming. */
const SIGNALS: Record<number, string> = {
  1: "SIGHUP",
  2: "SIGINT",
  4: "SIGILL",
  6: "SIGABRT",
  7: "SIGBUS",
  8: "SIGFPE",
  9: "SIGKILL",
  11: "SIGSEGV",
  13: "SIGPIPE",
  15: "SIGTERM",
  24: "SIGXCPU",
  25: "SIGXFSZ",
  31: "SIGSYS",
};

/** bash reports a death by signal N as status 128 + N (timeout passes its command's death on). */
function signalOf(status: number): string | null {
  return status > 128 ? (SIGNALS[status - 128] ?? `signal ${status - 128}`) : null;
}

function describeStatus(status: number): string {
  const signal = signalOf(status);
  return signal ? `killed by ${signal}` : describeExitStatus(status);
}

function unfinished(index: number, limitHit: LimitHit | null, status: number, recordsCut: boolean): ErrorInfo {
  if (limitHit) return { name: limitHit.code, message: `call ${index} did not finish: ${limitHit.message}`, stack: "" };
  if (recordsCut) {
    return {
      name: OUTPUT_TOO_LARGE_ERROR,
      message: `call ${index}'s result did not fit in the ${RECORDS_HARD_CAP_BYTES / MiB} MiB of outputs and logs the container home brings back per job`,
      stack: "",
    };
  }
  return {
    name: "SandboxExited",
    message: `call ${index} did not finish: the job's process ended (${describeStatus(status)})`,
    stack: "",
  };
}

/**
 * A sandbox id per executionId, valid for the SDK (1–63 characters, no leading or trailing hyphen) and
 * lowercase (hostnames, hence preview URLs, are case-insensitive). Dispatcher ids (`exec_` + 32 hex)
 * are used as they are; anything else is hashed. The two forms cannot collide: only the hashed one has a
 * hyphen after "node-".
 */
export async function sandboxIdFor(executionId: string): Promise<string> {
  if (/^[a-z0-9_]{1,56}$/.test(executionId)) return `node-${executionId}`;
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(executionId));
  return `node-h-${hex(new Uint8Array(digest)).slice(0, 56)}`;
}

async function written(write: ReturnType<SandboxLike["writeFile"]>, path: string): Promise<void> {
  const result = await write;
  if (!result.success) throw new Error(`the container did not write ${path}`);
}

/** Never throws and never waits longer than DESTROY_TIMEOUT_MS. */
async function destroy(sandbox: Pick<SandboxLike, "destroy">): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const bound = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, DESTROY_TIMEOUT_MS);
  });
  const destroyed = Promise.resolve()
    .then(() => sandbox.destroy())
    .catch(() => undefined);
  try {
    await Promise.race([destroyed, bound]);
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}

function randomHex(bytes: number): string {
  return hex(crypto.getRandomValues(new Uint8Array(bytes)));
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

function unavailable(message: string): NodeRunReply {
  return { ok: false, error: { code: "SANDBOX_UNAVAILABLE", message } };
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
