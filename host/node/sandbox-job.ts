/**
 * One `node` job in one fresh bubblewrap sandbox, from staging its code to removing its cgroup.
 *
 * The host watches the sandbox from outside and decides which limit fired from what the kernel says
 * (exit status, cgroup counters, statfs of the job's tmpfs mounts), not from what the job's process
 * says. The wall clock, the cgroup CPU total and the file count are polled; when one is exceeded the
 * whole sandbox is SIGKILLed: its outermost process (bwrap, whose --die-with-parent init then takes
 * the pid namespace down with it) and every task left in its cgroups.
 */
import { spawn, type ChildProcess, type StdioOptions } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chownSync,
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statfsSync,
  writeFileSync,
} from "node:fs";
import { constants } from "node:os";
import { join, relative } from "node:path";
import type { Readable, Writable } from "node:stream";
import { BoundedText, JobRecords } from "./channel.ts";
import { inheritableDescriptors } from "./descriptors.ts";
import type { CgroupCounters, CgroupRoot, JobCgroup } from "./cgroup.ts";
import type { LimitHit, NodeRunReply, NodeRunRequest, CallOutcome } from "./protocol.ts";
import {
  JOIN_FAILED_STATUS,
  SANDBOX_WORKSPACE,
  sandboxCommand,
  type SandboxPlan,
  type Tools,
} from "./sandbox-command.ts";

const MiB = 1024 * 1024;
/** stdin, stdout, stderr, records, setup (the harness's) and bwrap's --info-fd and --args. */
const OWN_DESCRIPTORS = 7;
type StdioOption = Extract<StdioOptions, unknown[]>[number];
/** How often the host checks the CPU total and the file count while a job runs. */
const POLL_MS = 50;
/** After its last record the harness exits on its own; past this it is killed (a job may break exit). */
const EXIT_GRACE_MS = 500;
/** After the sandbox's first process exits, its pipes get this long to drain before they are cut. */
const CLOSE_GRACE_MS = 1_000;
/** stdout and stderr are each kept up to this size. */
const STREAM_CAP_BYTES = 64 * 1024;
/** pids.max charges threads: a Node process runs up to 11 (main, 4 V8 workers, 4 libuv, 2 internal). */
const TASKS_PER_NODE_PROCESS = 12;
/** bwrap's outer process and its init (pid 1 of the sandbox). */
const SANDBOX_BASE_TASKS = 2;
/** Each writable tmpfs may use this share of memoryMb (its pages are charged to the memory cgroup too). */
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
const HEAP_EXHAUSTED = /Reached heap limit|JavaScript heap out of memory|Allocation failed/;

export interface JobEnvironment {
  tools: Tools;
  cgroups: CgroupRoot;
  layout: string[];
  nodeBinary: string;
  harness: string;
  stagingRoot: string;
  dropTo: { uid: number; gid: number } | undefined;
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class SandboxJob {
  readonly #env: JobEnvironment;
  readonly #request: NodeRunRequest;
  readonly #cpuLimitMs: number;
  readonly #nonce = randomBytes(16).toString("hex");
  readonly #stdout = new BoundedText(STREAM_CAP_BYTES);
  readonly #stderr = new BoundedText(STREAM_CAP_BYTES);
  readonly #records: JobRecords;
  readonly #timers: NodeJS.Timeout[] = [];
  #child: ChildProcess | undefined;
  #cgroup: JobCgroup | undefined;
  #initPid: number | undefined;
  #limitHit: LimitHit | null = null;
  #killed = false;
  #files = 0;

  constructor(env: JobEnvironment, request: NodeRunRequest) {
    this.#env = env;
    this.#request = request;
    this.#cpuLimitMs = request.cpuTimeMs ?? request.timeoutMs;
    this.#records = new JobRecords(
      this.#nonce,
      {
        inputs: request.inputs.length,
        maxLogEntries: request.maxLogEntries,
        maxLogBytes: request.maxLogBytes,
        maxOutputBytes: request.maxOutputBytes,
      },
      (kind) => {
        if (kind === "done") this.#finish();
      },
    );
  }

  async run(): Promise<NodeRunReply> {
    const started = performance.now();
    let staging: string;
    try {
      staging = this.#stage();
    } catch (error) {
      return unavailable(`could not stage the job: ${describe(error)}`);
    }
    try {
      const limits = this.#request.limits;
      const maxTasks = SANDBOX_BASE_TASKS + TASKS_PER_NODE_PROCESS * (1 + limits.maxSubprocesses);
      const memoryBytes = this.#request.memoryMb * MiB;
      if (this.#env.cgroups.controllers.length > 0) {
        try {
          this.#cgroup = this.#env.cgroups.create({ memoryBytes, maxTasks });
        } catch (error) {
          return unavailable(`could not create the job's cgroup: ${describe(error)}`);
        }
      }
      const plan: SandboxPlan = {
        tools: this.#env.tools,
        nodeBinary: this.#env.nodeBinary,
        harness: this.#env.harness,
        staging,
        cgroupDirs: this.#cgroup?.directories ?? [],
        dropTo: this.#env.dropTo,
        rlimits: {
          openFiles: limits.maxFileDescriptors,
          fileSize: limits.maxFileSize,
          cpuSeconds: Math.ceil(this.#cpuLimitMs / 1000),
          processes: this.#cgroup?.has("pids") ? undefined : NPROC_BACKSTOP,
          addressSpace: this.#cgroup?.has("memory") ? undefined : memoryBytes + ADDRESS_SPACE_HEADROOM_BYTES,
        },
        writable: limits.writable.map((path) => ({ path, sizeBytes: this.#writableBytes() })),
        heapMb: this.#request.memoryMb,
        layout: this.#env.layout,
      };
      const exit = await this.#spawn(plan);
      return await this.#report(exit, performance.now() - started);
    } finally {
      for (const timer of this.#timers) clearTimeout(timer);
      await this.#cleanUp(staging);
    }
  }

  /** A private host directory (job.js and any /workspace/<dir> mount points), bound read-only at /workspace. */
  #stage(): string {
    const staging = mkdtempSync(join(this.#env.stagingRoot, "cordon-node-"));
    const job = join(staging, "job.js");
    writeFileSync(job, this.#request.code, { mode: 0o400 });
    const owned = [staging, job];
    for (const path of this.#request.limits.writable) {
      if (!path.startsWith(`${SANDBOX_WORKSPACE}/`)) continue;
      const dir = join(staging, relative(SANDBOX_WORKSPACE, path));
      mkdirSync(dir, { recursive: true });
      owned.push(dir);
    }
    // The sandbox runs as an unprivileged uid when the host is root: it must be able to read its code.
    if (this.#env.dropTo) for (const path of owned) chownSync(path, this.#env.dropTo.uid, this.#env.dropTo.gid);
    return staging;
  }

  #writableBytes(): number {
    const bytes = Math.floor(this.#request.memoryMb * MiB * WRITABLE_SHARE);
    return bytes - (bytes % 4096);
  }

  #spawn(plan: SandboxPlan): Promise<Exit | "spawn-failed"> {
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
    let child: ChildProcess;
    try {
      child = spawn(file, args, { stdio, env: {}, cwd: "/", detached: true });
    } finally {
      if (devNull !== undefined) closeSync(devNull);
    }
    this.#child = child;
    // Node types child.stdio as five entries; the first seven are our pipes (any overlays are null).
    const streams = child.stdio.slice(0, OWN_DESCRIPTORS) as unknown as [
      Writable,
      Readable,
      Readable,
      Readable,
      Writable,
      Readable,
      Writable,
    ];
    const [, stdout, stderr, records, setup, info, options] = streams;
    for (const stream of streams) stream.on("error", () => undefined);
    stdout.on("data", (chunk: Buffer) => this.#stdout.push(chunk));
    stderr.on("data", (chunk: Buffer) => this.#stderr.push(chunk));
    records.on("data", (chunk: Buffer) => this.#records.push(chunk));
    this.#readInfo(info);
    options.end(bwrapOptions);
    setup.end(
      JSON.stringify({
        nonce: this.#nonce,
        executionId: this.#request.executionId,
        inputs: this.#request.inputs,
        captureConsole: this.#request.captureConsole,
        maxLogEntries: this.#request.maxLogEntries,
        maxLogBytes: this.#request.maxLogBytes,
        maxOutputBytes: this.#request.maxOutputBytes,
      }),
    );

    this.#after(this.#request.timeoutMs, () => {
      if (this.#records.done) return; // finished in time, only slow to exit: the exit grace handles that
      this.#stop({
        code: "SANDBOX_TIMEOUT",
        limit: "timeoutMs",
        message: `the job ran past its timeout of ${this.#request.timeoutMs} ms and was killed`,
      });
    });
    const poll = setInterval(() => this.#poll(), POLL_MS);
    this.#timers.push(poll);

    return new Promise((resolve) => {
      child.once("error", () => resolve("spawn-failed"));
      child.once("exit", (code, signal) => {
        clearInterval(poll);
        // Background processes are dead with the pid namespace, so the pipes close promptly; if one
        // somehow does not, it is cut rather than waited on.
        const cut = setTimeout(() => streams.forEach((stream) => stream.destroy()), CLOSE_GRACE_MS);
        child.once("close", () => {
          clearTimeout(cut);
          resolve({ code, signal });
        });
      });
    });
  }

  /** bwrap writes `{"child-pid": N, …}` on --info-fd once the sandbox's init exists. */
  #readInfo(info: Readable): void {
    let text = "";
    info.on("data", (chunk: Buffer) => {
      if (this.#initPid !== undefined || text.length > 4096) return;
      text += chunk.toString("utf8");
      const match = /"child-pid"\s*:\s*(\d+)/.exec(text);
      if (match?.[1]) this.#initPid = Number(match[1]);
    });
  }

  /** Every POLL_MS while the job runs; each check is a few reads of kernel pseudo-files. */
  #poll(): void {
    if (this.#killed || this.#records.done) return;
    const cpuNs = this.#cgroup?.cpuNs();
    if (cpuNs !== undefined && cpuNs / 1e6 > this.#cpuLimitMs) {
      this.#stop(cpuLimit(this.#cpuLimitMs));
      return;
    }
    this.#countProcesses();
    this.#countFiles();
  }

  /**
   * pids.max (or RLIMIT_NPROC) can only bound tasks, threads included, so it is a backstop sized in
   * TASKS_PER_NODE_PROCESS; the exact process count is polled here: from the pids cgroup, else by
   * walking the tree under the sandbox's init (orphans are reparented to it, so nothing escapes the walk).
   */
  #countProcesses(): void {
    const max = this.#request.limits.maxSubprocesses;
    let subprocesses: number;
    if (this.#cgroup?.has("pids")) {
      subprocesses = this.#cgroup.members().length - SANDBOX_BASE_TASKS - 1;
    } else if (this.#initPid !== undefined) {
      subprocesses = descendants(this.#initPid, max + 2) - 1;
    } else {
      return;
    }
    if (subprocesses > max) this.#stop(tooManyProcesses(max));
  }

  /**
   * Files and directories in the writable tmpfs mounts, from statfs through /proc/<init>/root: the
   * kernel's inode count (used = total − free, minus each mount's root), with no directory walk a job
   * could race or make expensive.
   */
  #countFiles(): void {
    if (this.#initPid === undefined || this.#killed) return;
    let used = 0;
    for (const path of this.#request.limits.writable) {
      try {
        const stats = statfsSync(`/proc/${this.#initPid}/root${path}`);
        used += Math.max(0, stats.files - stats.ffree - 1);
      } catch {
        return; // the sandbox is gone or going: keep the last count
      }
    }
    this.#files = used;
    const max = this.#request.limits.maxFiles;
    if (used > max) {
      this.#stop({
        code: "SANDBOX_SECURITY_VIOLATION",
        limit: "limits.maxFiles",
        message: `the job created ${used} files and directories in its writable paths; the limit is ${max}`,
      });
    }
  }

  /** The harness has sent its last record: count files one final time, then let it exit. */
  #finish(): void {
    this.#countFiles();
    this.#child?.stdin?.end();
    this.#after(EXIT_GRACE_MS, () => this.#kill());
  }

  /** Kills everything the job started (the caller cancelled it); the run then ends with what it had. */
  cancel(): void {
    this.#kill();
  }

  #stop(hit: LimitHit): void {
    if (this.#killed) return;
    this.#limitHit ??= hit;
    this.#kill();
  }

  #kill(): void {
    if (this.#killed) return;
    this.#killed = true;
    const pid = this.#child?.pid;
    if (pid !== undefined) {
      try {
        // The spawned process leads its own group (detached): sh, setpriv, prlimit and bwrap exec in turn.
        process.kill(-pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    void this.#cgroup?.killAll();
  }

  #after(ms: number, action: () => void): void {
    this.#timers.push(setTimeout(action, ms));
  }

  async #report(exit: Exit | "spawn-failed", runMs: number): Promise<NodeRunReply> {
    if (exit === "spawn-failed") return unavailable(`could not start ${this.#env.tools.sh}`);
    const counters: CgroupCounters = this.#cgroup?.counters() ?? {
      peakMemoryBytes: undefined,
      cpuNs: undefined,
      oomKills: 0,
      pidsRefused: 0,
    };
    const stderr = this.#stderr.text();
    const limitHit = this.#classify(exit, counters, stderr);
    const records = this.#records;
    if (!records.ready && limitHit === null) {
      const why = exit.code === JOIN_FAILED_STATUS ? "it could not join its cgroup" : describeExit(exit);
      return unavailable(`the sandbox did not start (${why}): ${stderr.slice(0, 2048).trim()}`);
    }
    const calls: CallOutcome[] = records.calls.map(
      (call, index) => call ?? { ok: false, error: unfinished(index, limitHit, exit) },
    );
    const done = records.done;
    return {
      ok: true,
      report: {
        calls,
        logs: records.logs,
        logBytes: records.logBytes,
        logsDropped: records.logsDropped,
        stdout: this.#stdout.text(),
        stderr,
        metrics: {
          runMs: Math.round(runMs),
          cpuTimeMs: Math.round(counters.cpuNs !== undefined ? counters.cpuNs / 1e6 : (done?.cpuMs ?? 0)),
          peakMemoryMb: roundMb(
            counters.peakMemoryBytes !== undefined ? counters.peakMemoryBytes : (done?.maxRssKb ?? 0) * 1024,
          ),
          filesWritten: this.#files,
        },
        limitHit,
      },
    };
  }

  /**
   * Which limit fired, in order of certainty: what the host itself stopped, then the kernel's own
   * counters and signals, then the errno of an error the job let escape (an rlimit's only trace).
   */
  #classify(exit: Exit, counters: CgroupCounters, stderr: string): LimitHit | null {
    if (this.#limitHit) return this.#limitHit;
    const memoryMb = this.#request.memoryMb;
    if (counters.oomKills > 0 || HEAP_EXHAUSTED.test(stderr)) {
      return {
        code: "SANDBOX_MEMORY_LIMIT",
        limit: "memoryMb",
        message: `the job used more than its ${memoryMb} MB of memory and was killed`,
      };
    }
    const signal = exitSignal(exit);
    const finished = this.#records.done !== undefined;
    const cpuMs = counters.cpuNs !== undefined ? counters.cpuNs / 1e6 : undefined;
    if (
      signal === "SIGXCPU" ||
      (!finished && signal === "SIGKILL" && cpuMs !== undefined && cpuMs >= this.#cpuLimitMs)
    ) {
      return cpuLimit(this.#cpuLimitMs);
    }
    const limits = this.#request.limits;
    const codes = this.#records.errorCodes;
    if (counters.pidsRefused > 0 || (codes.has("EAGAIN") && !this.#cgroup?.has("pids"))) {
      return tooManyProcesses(limits.maxSubprocesses);
    }
    if (signal === "SIGXFSZ" || codes.has("EFBIG")) {
      return {
        code: "SANDBOX_SECURITY_VIOLATION",
        limit: "limits.maxFileSize",
        message: `the job tried to write a file larger than ${limits.maxFileSize} bytes`,
      };
    }
    if (codes.has("EMFILE")) {
      return {
        code: "SANDBOX_SECURITY_VIOLATION",
        limit: "limits.maxFileDescriptors",
        message: `the job tried to hold more than ${limits.maxFileDescriptors} open file descriptors`,
      };
    }
    if (codes.has("ENOSPC")) {
      return {
        code: "SANDBOX_MEMORY_LIMIT",
        limit: "limits.writable",
        message: `a writable path is full: each holds at most ${this.#writableBytes()} bytes (half of memoryMb, and counted in it)`,
      };
    }
    if (codes.has("EROFS")) {
      return {
        code: "SANDBOX_SECURITY_VIOLATION",
        limit: "limits.writable",
        message: `the job tried to write outside its writable paths (${limits.writable.join(", ")})`,
      };
    }
    return null;
  }

  async #cleanUp(staging: string): Promise<void> {
    if (this.#cgroup) {
      // The pid namespace is gone by now; anything still listed is killed before the group is removed.
      if (this.#cgroup.members().length > 0) await this.#cgroup.killAll();
      await this.#cgroup.remove();
    }
    rmSync(staging, { recursive: true, force: true });
  }
}

/** Processes below `pid` (not counting it), from /proc/<pid>/task/<tid>/children; stops past `enough`. */
function descendants(pid: number, enough: number): number {
  const queue = [pid];
  let found = 0;
  while (queue.length > 0 && found <= enough) {
    const parent = queue.shift() as number;
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${parent}/task`);
    } catch {
      continue; // exited while we looked
    }
    for (const task of tasks) {
      let children: string;
      try {
        children = readFileSync(`/proc/${parent}/task/${task}/children`, "utf8");
      } catch {
        continue;
      }
      for (const child of children.split(" ")) {
        if (child.trim() === "") continue;
        found++;
        queue.push(Number(child));
      }
    }
  }
  return found;
}

function tooManyProcesses(max: number): LimitHit {
  return {
    code: "SANDBOX_SECURITY_VIOLATION",
    limit: "limits.maxSubprocesses",
    message: `the job tried to run more than ${max} subprocesses`,
  };
}

function cpuLimit(cpuTimeMs: number): LimitHit {
  return {
    code: "SANDBOX_TIMEOUT",
    limit: "cpuTimeMs",
    message: `the job used more than its ${cpuTimeMs} ms of CPU time and was killed`,
  };
}

/** bwrap exits 128+N when the job's process died of signal N; the host sees a signal only for its own kill. */
function exitSignal(exit: Exit): NodeJS.Signals | null {
  if (exit.signal) return exit.signal;
  if (exit.code === null || exit.code <= 128) return null;
  const number = exit.code - 128;
  const name = Object.entries(constants.signals).find(([, value]) => value === number)?.[0];
  return (name as NodeJS.Signals | undefined) ?? null;
}

function describeExit(exit: Exit): string {
  const signal = exitSignal(exit);
  return signal ? `killed by ${signal}` : `exit status ${exit.code}`;
}

function unfinished(index: number, limitHit: LimitHit | null, exit: Exit) {
  if (limitHit) {
    return { name: limitHit.code, message: `call ${index} did not finish: ${limitHit.message}`, stack: "" };
  }
  return {
    name: "SandboxExited",
    message: `call ${index} did not finish: the job's process ended (${describeExit(exit)})`,
    stack: "",
  };
}

function unavailable(message: string): NodeRunReply {
  return { ok: false, error: { code: "SANDBOX_UNAVAILABLE", message } };
}

function roundMb(bytes: number): number {
  return Math.round((bytes / MiB) * 10) / 10;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
