/**
 * One started bubblewrap sandbox, before and while it runs a job: its staging directory, its cgroups,
 * its processes and their pipes. A sandbox starts without a job (the harness waits for its setup on
 * fd 4), so the same object serves a cold start (the job is handed over at once) and a warm one (it
 * waited in the pool). Either way it serves exactly one job and is then destroyed.
 *
 * What a sandbox is fixed to when it starts, its shape (memoryMb: V8's heap limit, the tmpfs sizes and
 * the memory cgroup; the writable paths and the packages: mounts), can only be had by starting one. What
 * a job may change at hand-off, its rlimits and pids.max, is set on the running processes by `setLimits`
 * before the job's code exists in the sandbox (see README.md, "Warm sandboxes").
 */
import { spawn, type ChildProcess, type StdioOptions } from "node:child_process";
import { chownSync, closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import type { Readable, Writable } from "node:stream";
import type { CgroupRoot, JobCgroup } from "./cgroup.ts";
import { BoundedText } from "./channel.ts";
import { inheritableDescriptors } from "./descriptors.ts";
import { EgressProxy, type EgressRoutes } from "./egress-proxy.ts";
import type { NodeRunRequest } from "./protocol.ts";
import {
  EGRESS_SOCKET_FILE,
  SANDBOX_WORKSPACE,
  sandboxCommand,
  type SandboxPlan,
  type Tools,
} from "./sandbox-command.ts";

const MiB = 1024 * 1024;
/** stdin, stdout, stderr, records, setup (the harness's) and bwrap's --info-fd and --args. */
const OWN_DESCRIPTORS = 7;
type StdioOption = Extract<StdioOptions, unknown[]>[number];
/** stdin, stdout, stderr, records, setup, info, args (see OWN_DESCRIPTORS). */
type Streams = [Writable, Readable, Readable, Readable, Writable, Readable, Writable];
/** After the sandbox's first process exits, its pipes get this long to drain before they are cut. */
const CLOSE_GRACE_MS = 1_000;
/** stdout and stderr are each kept up to this size. */
const STREAM_CAP_BYTES = 64 * 1024;
/** pids.max charges threads: a Node process runs up to 11 (main, 4 V8 workers, 4 libuv, 2 internal). */
const TASKS_PER_NODE_PROCESS = 12;
/** bwrap's outer process and its init (pid 1 of the sandbox). */
export const SANDBOX_BASE_TASKS = 2;
/**
 * The writable tmpfs mounts together may use this share of memoryMb, split evenly between them. Their
 * pages are charged to the memory cgroup too; without one, nothing else bounds them (RLIMIT_AS does
 * not count tmpfs pages), so a share per path would let 8 paths hold 4 × memoryMb of the host's RAM.
 */
const WRITABLE_SHARE = 0.5;
/**
 * Without a pids cgroup, RLIMIT_NPROC is only a host-wide backstop against a runaway fork bomb: the
 * kernel counts it per uid across every sandbox (and, for a non-root host, every process of the host's
 * user), so it cannot be a per-job limit. A per-job value made a Node thread creation fail, and Node
 * then hangs, whenever another job's tasks were still counted. The per-job limit is the polled count.
 */
const NPROC_BACKSTOP = 1024;
/** Without a memory cgroup, RLIMIT_AS is memoryMb plus this (V8 reserves far more than it commits). */
const ADDRESS_SPACE_HEADROOM_BYTES = 1536 * MiB;
/** The harness's first line on fd 3, before any setup: it is up and waiting (see harness.mjs). */
const WAITING_LINE = "waiting\n";
/** Where the staged job's code goes (the harness imports /workspace/job.js). */
const JOB_FILE = "job.js";
/** Directory, in the staging directory, that the packages are mounted over. */
const PACKAGES_DIR = "node_modules";

export interface JobEnvironment {
  tools: Tools;
  cgroups: CgroupRoot;
  layout: string[];
  nodeBinary: string;
  harness: string;
  stagingRoot: string;
  dropTo: { uid: number; gid: number } | undefined;
  /** Where the jobs' egress proxies send what they let through. */
  egress: EgressRoutes;
}

/** What a sandbox is fixed to from its start: a job can only use a warm sandbox of its own shape. */
export interface SandboxShape {
  memoryMb: number;
  writable: readonly string[];
  /** The installed packages (host node_modules) and the cache key of their set. */
  packages: { key: string; dir: string } | undefined;
}

/** The job's limits that can be set on a running sandbox (before its code loads). */
export interface HandOffLimits {
  /** RLIMIT_NOFILE */
  openFiles: number;
  /** RLIMIT_FSIZE, bytes */
  fileSize: number;
  /** RLIMIT_CPU soft limit, seconds; the hard limit is one second later. */
  cpuSeconds: number;
  /** pids.max, tasks (threads included) */
  maxTasks: number;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export function shapeOf(request: NodeRunRequest, packages: SandboxShape["packages"]): SandboxShape {
  return { memoryMb: request.memoryMb, writable: request.limits.writable, packages };
}

/** Two shapes with the same key start identical sandboxes (the order of the writable paths is irrelevant). */
export function shapeKey(shape: SandboxShape): string {
  return JSON.stringify([shape.memoryMb, [...shape.writable].sort(), shape.packages?.key ?? null]);
}

export function handOffLimitsOf(request: NodeRunRequest): HandOffLimits {
  const limits = request.limits;
  return {
    openFiles: limits.maxFileDescriptors,
    fileSize: limits.maxFileSize,
    cpuSeconds: Math.ceil((request.cpuTimeMs ?? request.timeoutMs) / 1000),
    maxTasks: SANDBOX_BASE_TASKS + TASKS_PER_NODE_PROCESS * (1 + limits.maxSubprocesses),
  };
}

/** The byte size of each of `paths` writable tmpfs mounts for a memoryMb (page-aligned). */
export function writableBytes(memoryMb: number, paths: number): number {
  const bytes = Math.floor((memoryMb * MiB * WRITABLE_SHARE) / Math.max(1, paths));
  return bytes - (bytes % 4096);
}

/** Every sandbox not yet destroyed, for the host's exit (below). */
const live = new Set<Sandbox>();
let exitHook = false;

/** How long an exiting host may block removing its sandboxes' cgroups (their tasks take a moment to die). */
const EXIT_CLEANUP_MS = 500;

/**
 * When the host exits (normally, or on an uncaught exception), SIGKILLs every sandbox it has, warm
 * ones included, and removes their directories. --die-with-parent would end a sandbox that is up, but
 * one still starting (a refill) may not have armed it yet, and bwrap's init then outlives the host.
 * Only synchronous work is possible here. A SIGKILLed host runs none of it: its sandboxes die with it
 * (but for one caught starting), and their directories stay (CgroupRoot.sweep removes the cgroups).
 */
function cleanUpOnExit(): void {
  if (exitHook) return;
  exitHook = true;
  process.on("exit", () => {
    for (const sandbox of live) sandbox.kill();
    const deadline = Date.now() + EXIT_CLEANUP_MS;
    for (const sandbox of live) sandbox.removeNow(deadline);
  });
}

export class Sandbox {
  readonly shape: SandboxShape;
  readonly stdout = new BoundedText(STREAM_CAP_BYTES);
  readonly stderr = new BoundedText(STREAM_CAP_BYTES);
  /** Resolves once the first process has exited and the pipes have closed (or been cut). */
  readonly exited: Promise<Exit | "spawn-failed">;
  /** Resolves true when the harness says it is waiting for its setup, false if the sandbox ends first. */
  readonly waiting: Promise<boolean>;
  readonly startedAt = performance.now();
  /** The rlimits and pids.max it was started with. */
  readonly startLimits: HandOffLimits;
  #ready = false;
  #exit: Exit | "spawn-failed" | undefined;
  #limits: HandOffLimits;
  #initPid: number | undefined;
  #killed = false;
  /** The first process has exited (and been reaped): its pid is no longer ours to signal. */
  #reaped = false;
  #stopped: Promise<void> | undefined;
  #destroyed: Promise<void> | undefined;
  #records: ((chunk: Buffer) => void) | undefined;
  readonly #early: Buffer[] = [];
  readonly #env: JobEnvironment;
  readonly #staging: string;
  readonly #cgroup: JobCgroup | undefined;
  readonly #child: ChildProcess;
  readonly #streams: Streams;
  readonly #onDestroy: (() => void) | undefined;

  /**
   * Stages, creates the cgroups and spawns; throws (having cleaned up) if staging or the cgroups fail.
   * `onDestroy` runs once the sandbox is gone (e.g. to release the packages it mounts).
   */
  constructor(env: JobEnvironment, shape: SandboxShape, limits: HandOffLimits, onDestroy?: () => void) {
    cleanUpOnExit();
    this.#env = env;
    this.shape = shape;
    this.#limits = limits;
    this.startLimits = limits;
    this.#onDestroy = onDestroy;
    this.#staging = this.#stage();
    try {
      if (env.cgroups.controllers.length > 0) {
        this.#cgroup = env.cgroups.create({ memoryBytes: shape.memoryMb * MiB, maxTasks: limits.maxTasks });
      }
    } catch (error) {
      rmSync(this.#staging, { recursive: true, force: true });
      throw new Error(`could not create the job's cgroup: ${describe(error)}`, { cause: error });
    }
    const memoryBytes = shape.memoryMb * MiB;
    const plan: SandboxPlan = {
      tools: env.tools,
      nodeBinary: env.nodeBinary,
      harness: env.harness,
      staging: this.#staging,
      cgroupDirs: this.#cgroup?.directories ?? [],
      dropTo: env.dropTo,
      rlimits: {
        openFiles: limits.openFiles,
        fileSize: limits.fileSize,
        cpuSeconds: limits.cpuSeconds,
        processes: this.#cgroup?.has("pids") ? undefined : NPROC_BACKSTOP,
        addressSpace: this.#cgroup?.has("memory") ? undefined : memoryBytes + ADDRESS_SPACE_HEADROOM_BYTES,
      },
      writable: shape.writable.map((path) => ({
        path,
        sizeBytes: writableBytes(shape.memoryMb, shape.writable.length),
      })),
      packages: shape.packages?.dir,
      heapMb: shape.memoryMb,
      layout: env.layout,
    };
    const { file, args, bwrapOptions } = sandboxCommand(plan);
    // No environment at all and cwd "/": bwrap becomes pid 1 of the sandbox, and its /proc/1/environ is
    // readable there (sh adds PWD).
    const stdio: StdioOption[] = Array(OWN_DESCRIPTORS).fill("pipe");
    const leaking = inheritableDescriptors(OWN_DESCRIPTORS);
    const devNull = leaking.length > 0 ? openSync("/dev/null", "r") : undefined;
    for (const fd of leaking) {
      while (stdio.length < fd) stdio.push("ignore");
      stdio[fd] = devNull;
    }
    try {
      this.#child = spawn(file, args, { stdio, env: {}, cwd: "/", detached: true });
    } catch (error) {
      void this.#cgroup?.remove();
      rmSync(this.#staging, { recursive: true, force: true });
      throw new Error(`could not start ${file}: ${describe(error)}`, { cause: error });
    } finally {
      if (devNull !== undefined) closeSync(devNull);
    }
    live.add(this);
    // Node types child.stdio as five entries; the first seven are our pipes (any overlays are null).
    this.#streams = this.#child.stdio.slice(0, OWN_DESCRIPTORS) as unknown as Streams;
    const [, stdout, stderr, records, , info, options] = this.#streams;
    for (const stream of this.#streams) stream.on("error", () => undefined);
    stdout.on("data", (chunk: Buffer) => this.stdout.push(chunk));
    stderr.on("data", (chunk: Buffer) => this.stderr.push(chunk));
    let resolveWaiting: (ready: boolean) => void = () => undefined;
    this.waiting = new Promise((resolve) => (resolveWaiting = resolve));
    let seen = "";
    // Ready needs both the harness's line and the init's pid (from another pipe, so in either order).
    const checkReady = () => {
      if (this.#ready || seen !== WAITING_LINE || this.#initPid === undefined) return;
      this.#ready = true;
      resolveWaiting(true);
    };
    records.on("data", (chunk: Buffer) => {
      if (seen.length < WAITING_LINE.length) {
        // Only the harness can write here before it has its setup (no job code exists yet).
        seen += chunk.toString("latin1", 0, WAITING_LINE.length - seen.length);
        checkReady();
      }
      if (this.#records) this.#records(chunk);
      else this.#early.push(chunk);
    });
    this.#readInfo(info, checkReady);
    options.end(bwrapOptions);
    this.exited = new Promise((resolve) => {
      const child = this.#child;
      child.once("error", () => {
        this.#exit = "spawn-failed";
        resolveWaiting(false);
        resolve("spawn-failed");
      });
      child.once("exit", (code, signal) => {
        this.#reaped = true;
        // Background processes are dead with the pid namespace, so the pipes close promptly; if one
        // somehow does not, it is cut rather than waited on.
        const cut = setTimeout(() => this.#streams.forEach((stream) => stream.destroy()), CLOSE_GRACE_MS);
        child.once("close", () => {
          clearTimeout(cut);
          this.#exit = { code, signal };
          resolveWaiting(false);
          resolve({ code, signal });
        });
      });
    });
  }

  /** Whether the harness is waiting for its setup and nothing has ended or been handed over yet. */
  get ready(): boolean {
    return this.#ready && !this.#reaped && !this.#killed && this.#records === undefined;
  }

  /**
   * The harness is running inside the finished sandbox (it has said it is waiting). Until then
   * /proc/<init>/root may still be the host's root: bwrap reports its init before it has built the
   * sandbox's mounts.
   */
  get harnessUp(): boolean {
    return this.#ready;
  }

  get cgroup(): JobCgroup | undefined {
    return this.#cgroup;
  }

  /** The sandbox's init (bwrap, pid 1 inside), once bwrap has reported it. */
  get initPid(): number | undefined {
    return this.#initPid;
  }

  /** Where the job's records go; whatever arrived before (the harness's waiting line) is passed on first. */
  onRecords(sink: (chunk: Buffer) => void): void {
    this.#records = sink;
    for (const chunk of this.#early.splice(0)) sink(chunk);
  }

  /**
   * Sets a job's rlimits and pids.max on a running sandbox whose harness has not been given its setup
   * (so no job code has run in it). The rlimits are set with `prlimit --pid` on each of the sandbox's
   * three processes (bwrap's outer process, its init, the harness), all of which exist by then and none
   * of which has a child that would keep the old values. prlimit runs as the sandbox's own uid: the
   * kernel lets a process of the same uid lower another's limits, while root would need
   * CAP_SYS_RESOURCE, which some hosts (containers, gVisor) withhold. Raising a hard limit needs that
   * capability too, so a job that needs more than the sandbox started with gets false (the caller then
   * destroys this sandbox and starts a fresh one). Only the values that differ are set.
   */
  async setLimits(limits: HandOffLimits): Promise<boolean> {
    const current = this.#limits;
    if (limits.openFiles > current.openFiles || limits.fileSize > current.fileSize) return false;
    if (limits.cpuSeconds > current.cpuSeconds) return false;
    if (limits.maxTasks !== current.maxTasks && this.#cgroup?.has("pids")) {
      if (!this.#cgroup.setMaxTasks(limits.maxTasks)) return false;
    }
    const flags: string[] = [];
    if (limits.openFiles !== current.openFiles) flags.push(`--nofile=${limits.openFiles}:${limits.openFiles}`);
    if (limits.fileSize !== current.fileSize) flags.push(`--fsize=${limits.fileSize}:${limits.fileSize}`);
    if (limits.cpuSeconds !== current.cpuSeconds) {
      flags.push(`--cpu=${limits.cpuSeconds}:${limits.cpuSeconds + 1}`);
    }
    if (flags.length > 0) {
      const pids = this.#processes();
      if (pids === undefined) return false;
      const { tools, dropTo } = this.#env;
      const asSandbox = dropTo
        ? [`--reuid=${dropTo.uid}`, `--regid=${dropTo.gid}`, "--clear-groups", "--no-new-privs", "--", tools.prlimit]
        : [];
      const results = await Promise.all(
        pids.map((pid) =>
          dropTo
            ? run(tools.setpriv ?? "setpriv", [...asSandbox, "--pid", String(pid), ...flags])
            : run(tools.prlimit, ["--pid", String(pid), ...flags]),
        ),
      );
      if (!results.every(Boolean)) return false;
    }
    this.#limits = limits;
    return true;
  }

  /** bwrap's outer process, the sandbox's init and the harness; undefined if one is missing. */
  #processes(): number[] | undefined {
    const outer = this.#child.pid;
    const init = this.#initPid;
    if (outer === undefined || init === undefined) return undefined;
    let children: string[];
    try {
      children = readFileSync(`/proc/${init}/task/${init}/children`, "utf8").trim().split(/\s+/);
    } catch {
      return undefined;
    }
    // Before the setup, the init has exactly one child: the harness.
    if (children.length !== 1 || !/^\d+$/.test(children[0] ?? "")) return undefined;
    return [outer, init, Number(children[0])];
  }

  /**
   * Opens the job's egress proxy on the socket the harness forwards to (before the job's code exists
   * in the sandbox). Without a policy the proxy refuses, and records, every attempt.
   */
  openEgress(request: NodeRunRequest): Promise<EgressProxy> {
    return EgressProxy.open({
      socketPath: join(this.#staging, EGRESS_SOCKET_FILE),
      executionId: request.executionId,
      policy: request.network ?? null,
      routes: this.#env.egress,
      owner: this.#env.dropTo,
    });
  }

  /** Writes the job's code where the harness will import it (it reads its setup first, so this precedes it). */
  stageJob(code: string): void {
    const path = join(this.#staging, JOB_FILE);
    writeFileSync(path, code, { mode: 0o400 });
    // The sandbox runs as an unprivileged uid when the host is root: it must be able to read its code.
    if (this.#env.dropTo) chownSync(path, this.#env.dropTo.uid, this.#env.dropTo.gid);
  }

  sendSetup(setup: string): void {
    this.#streams[4].end(setup);
  }

  /**
   * SIGKILLs the sandbox's outermost process (bwrap, whose --die-with-parent init then takes the pid
   * namespace down with it) and every task in its cgroups.
   */
  kill(): void {
    if (this.#killed) return;
    this.#killed = true;
    const pid = this.#child.pid;
    // Once it has exited and been reaped, its pid (and group id) may belong to someone else.
    if (pid !== undefined && !this.#reaped) {
      try {
        // The spawned process leads its own group (detached): sh, setpriv, prlimit and bwrap exec in turn.
        process.kill(-pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    void this.#cgroup?.killAll();
  }

  /**
   * Kills what is left and waits until no process of the sandbox remains: its first process has exited
   * (so the pid namespace is gone) and its cgroups are empty.
   */
  stop(): Promise<void> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  async #stop(): Promise<void> {
    if (this.#exit === undefined) this.kill();
    await this.exited;
    // Anything still listed (a task the namespace's end has not reaped yet) is killed until none is.
    if (this.#cgroup && this.#cgroup.members().length > 0) await this.#cgroup.killAll();
  }

  /** For an exiting host: removes the staging directory and (until `deadline`) the cgroups, synchronously. */
  removeNow(deadline: number): void {
    rmSync(this.#staging, { recursive: true, force: true });
    this.#cgroup?.removeSync(deadline);
  }

  /** stop(), then removes the cgroups and the staging directory. */
  destroy(): Promise<void> {
    this.#destroyed ??= this.#destroy();
    return this.#destroyed;
  }

  async #destroy(): Promise<void> {
    try {
      await this.stop();
      await this.#cgroup?.remove();
      rmSync(this.#staging, { recursive: true, force: true });
    } finally {
      live.delete(this);
      this.#onDestroy?.();
    }
  }

  /** A private host directory (mount points only; job.js comes at hand-off), bound read-only at /workspace. */
  #stage(): string {
    const staging = mkdtempSync(join(this.#env.stagingRoot, "cordon-node-"));
    try {
      const owned = [staging];
      const mountPoints = this.shape.writable
        .filter((path) => path.startsWith(`${SANDBOX_WORKSPACE}/`))
        .map((path) => relative(SANDBOX_WORKSPACE, path));
      if (this.shape.packages) mountPoints.push(PACKAGES_DIR);
      for (const mountPoint of mountPoints) {
        const dir = join(staging, mountPoint);
        mkdirSync(dir, { recursive: true });
        owned.push(dir);
      }
      if (this.#env.dropTo) for (const path of owned) chownSync(path, this.#env.dropTo.uid, this.#env.dropTo.gid);
      return staging;
    } catch (error) {
      rmSync(staging, { recursive: true, force: true });
      throw new Error(`could not stage the job: ${describe(error)}`, { cause: error });
    }
  }

  /** bwrap writes `{"child-pid": N, …}` on --info-fd once the sandbox's init exists. */
  #readInfo(info: Readable, onPid: () => void): void {
    let text = "";
    info.on("data", (chunk: Buffer) => {
      if (this.#initPid !== undefined || text.length > 4096) return;
      text += chunk.toString("utf8");
      const match = /"child-pid"\s*:\s*(\d+)/.exec(text);
      if (match?.[1]) {
        this.#initPid = Number(match[1]);
        onPid();
      }
    });
  }
}

/** Runs a host tool (no shell, empty environment); true if it exited 0. */
function run(file: string, args: string[]): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { stdio: "ignore", env: {}, cwd: "/" });
    child.once("error", () => resolve(false));
    child.once("exit", (code) => resolve(code === 0));
  });
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
