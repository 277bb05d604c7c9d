/**
 * One `node` job in one bubblewrap sandbox, from handing it its code to destroying the sandbox. The
 * sandbox was started for this job (a cold start) or taken from the warm pool; either way it has not
 * run anything else, and it is destroyed afterwards.
 *
 * The host watches the sandbox from outside and decides which limit fired from what the kernel says
 * (exit status, cgroup counters, statfs of the job's tmpfs mounts), not from what the job's process
 * says. The wall clock, the cgroup CPU total and the file count are polled; when one is exceeded the
 * whole sandbox is SIGKILLed: its outermost process (bwrap, whose --die-with-parent init then takes
 * the pid namespace down with it) and every task left in its cgroups.
 */
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync, statfsSync } from "node:fs";
import { constants } from "node:os";
import { JobRecords } from "./channel.ts";
import type { CgroupCounters } from "./cgroup.ts";
import type { EgressProxy } from "./egress-proxy.ts";
import type { EgressReport } from "../../src/egress/meter.ts";
import { describeExitStatus } from "../../src/node/exit-status.ts";
import {
  LIMIT_HITS,
  type CallOutcome,
  type LimitHit,
  type NodeRunMetrics,
  type NodeRunReply,
  type NodeRunRequest,
} from "./protocol.ts";
import { JOIN_FAILED_STATUS } from "./sandbox-command.ts";
import { SANDBOX_BASE_TASKS, handOffLimitsOf, writableBytes, type Exit, type Sandbox } from "./sandbox.ts";

const MiB = 1024 * 1024;
/** How often the host checks the CPU total and the file count while a job runs. */
const POLL_MS = 50;
const HEAP_EXHAUSTED = /Reached heap limit|JavaScript heap out of memory|Allocation failed/;

/** The sandbox could not take the job's limits at hand-off; it has been destroyed, the job has not run. */
export const HAND_OFF_FAILED = "hand-off-failed";

/** Reply fields the runner knows and the job does not (how the sandbox and the packages were had). */
export type ExtraMetrics = Pick<NodeRunMetrics, "coldStart" | "installMs" | "packageCache">;

export class SandboxJob {
  readonly #request: NodeRunRequest;
  readonly #sandbox: Sandbox;
  readonly #warm: boolean;
  readonly #cpuLimitMs: number;
  readonly #statedTimeoutMs: number;
  readonly #nonce = randomBytes(16).toString("hex");
  readonly #records: JobRecords;
  readonly #timers: NodeJS.Timeout[] = [];
  #limitHit: LimitHit | null = null;
  #killed = false;
  #files = 0;

  /**
   * `warm`: the sandbox was started before this job, with other rlimits, and waited in the pool.
   * `statedTimeoutMs`: the job's own timeout, which the messages name; `request.timeoutMs` is what
   * is left of it once installing and waiting for a sandbox took their share.
   */
  constructor(request: NodeRunRequest, sandbox: Sandbox, warm: boolean, statedTimeoutMs = request.timeoutMs) {
    this.#request = request;
    this.#statedTimeoutMs = statedTimeoutMs;
    this.#sandbox = sandbox;
    this.#warm = warm;
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

  /**
   * Runs the job, then destroys the sandbox: the reply comes once no process of the sandbox is left
   * (`Sandbox.stop`); removing its cgroups and staging directory (`Sandbox.destroy`, which the caller
   * may await) goes on after. HAND_OFF_FAILED (warm only) means the job never started and may be run
   * again in a fresh sandbox.
   */
  async run(extra: ExtraMetrics = {}): Promise<NodeRunReply | typeof HAND_OFF_FAILED> {
    const sandbox = this.#sandbox;
    let egress: EgressProxy | undefined;
    try {
      // For a cold start the sandbox already has the job's limits; a warm one gets them now, before
      // anything of the job exists in it.
      if (this.#warm && !(await sandbox.setLimits(handOffLimitsOf(this.#request)))) return HAND_OFF_FAILED;
      // It may have died while it waited or while its limits were set: then nothing of the job is lost.
      // (Unless the job was cancelled meanwhile: then it goes on to end as a cancelled cold start does.)
      if (this.#warm && !sandbox.ready && !this.#killed) return HAND_OFF_FAILED;
      // A cold start's clock runs from the spawn (start-up included), a warm one's from the hand-off.
      const started = this.#warm ? performance.now() : sandbox.startedAt;
      try {
        egress = await sandbox.openEgress(this.#request);
        sandbox.stageJob(this.#request.code);
      } catch (error) {
        return unavailable(`could not stage the job: ${describe(error)}`);
      }
      sandbox.onRecords((chunk) => this.#records.push(chunk));
      sandbox.sendSetup(
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
      const remainingMs = Math.max(0, this.#request.timeoutMs - (performance.now() - started));
      this.#after(remainingMs, () => {
        if (this.#records.done) return; // finished in time, only slow to exit: the exit grace handles that
        this.#stop({
          code: "SANDBOX_TIMEOUT",
          limit: "timeoutMs",
          message: `the job ran past its timeout of ${this.#statedTimeoutMs} ms and was killed`,
        });
      });
      const poll = setInterval(() => this.#poll(), POLL_MS);
      this.#timers.push(poll);
      const exit = await sandbox.exited;
      clearInterval(poll);
      await egress.close();
      return this.#report(exit, performance.now() - started, extra, egress.report());
    } finally {
      await egress?.close();
      for (const timer of this.#timers) clearTimeout(timer);
      await sandbox.stop();
      void sandbox.destroy();
    }
  }

  /** Every POLL_MS while the job runs; each check is a few reads of kernel pseudo-files. */
  #poll(): void {
    if (this.#killed || this.#records.done) return;
    const cpuNs = this.#sandbox.cgroup?.cpuNs();
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
    const cgroup = this.#sandbox.cgroup;
    const initPid = this.#sandbox.initPid;
    if (cgroup?.has("pids")) {
      subprocesses = cgroup.members().length - SANDBOX_BASE_TASKS - 1;
    } else if (initPid !== undefined) {
      subprocesses = descendants(initPid, max + 2) - 1;
    } else {
      return;
    }
    if (subprocesses > max) this.#stop(LIMIT_HITS.subprocesses(max));
  }

  /**
   * Files and directories in the writable tmpfs mounts, from statfs through /proc/<init>/root: the
   * kernel's inode count (used = total − free, minus each mount's root), with no directory walk a job
   * could race or make expensive.
   */
  #countFiles(): void {
    const initPid = this.#sandbox.initPid;
    // Before the harness is up, statfs would see the host's own /tmp (and count its files against the job).
    if (initPid === undefined || this.#killed || !this.#sandbox.harnessUp) return;
    let used = 0;
    for (const path of this.#request.limits.writable) {
      try {
        const stats = statfsSync(`/proc/${initPid}/root${path}`);
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
  /**
   * The job's last record has come: the files are counted while its mounts still exist (the harness
   * waits for this), then the sandbox ends at once. Everything the harness reports was written before
   * that record; waiting for Node to exit by itself would only add its teardown to every job.
   */
  #finish(): void {
    this.#countFiles();
    this.#kill();
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
    this.#sandbox.kill();
  }

  #after(ms: number, action: () => void): void {
    this.#timers.push(setTimeout(action, ms));
  }

  #report(exit: Exit | "spawn-failed", runMs: number, extra: ExtraMetrics, egress: EgressReport): NodeRunReply {
    if (exit === "spawn-failed") return unavailable("could not start the sandbox's first process (sh)");
    const counters: CgroupCounters = this.#sandbox.cgroup?.counters() ?? {
      peakMemoryBytes: undefined,
      cpuNs: undefined,
      oomKills: 0,
      pidsRefused: 0,
    };
    const stderr = this.#sandbox.stderr.text();
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
        stdout: this.#sandbox.stdout.text(),
        stderr,
        metrics: {
          runMs: Math.round(runMs),
          cpuTimeMs: Math.round(counters.cpuNs !== undefined ? counters.cpuNs / 1e6 : (done?.cpuMs ?? 0)),
          peakMemoryMb: roundMb(
            counters.peakMemoryBytes !== undefined ? counters.peakMemoryBytes : (done?.maxRssKb ?? 0) * 1024,
          ),
          filesWritten: this.#files,
          ...extra,
        },
        limitHit,
        egress,
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
    if (counters.pidsRefused > 0 || (codes.has("EAGAIN") && !this.#sandbox.cgroup?.has("pids"))) {
      return LIMIT_HITS.subprocesses(limits.maxSubprocesses);
    }
    if (signal === "SIGXFSZ" || codes.has("EFBIG")) return LIMIT_HITS.fileSize(limits.maxFileSize);
    if (codes.has("EMFILE")) return LIMIT_HITS.fileDescriptors(limits.maxFileDescriptors);
    if (codes.has("ENOSPC")) {
      return {
        code: "SANDBOX_MEMORY_LIMIT",
        limit: "limits.writable",
        message: `a writable path is full: each holds at most ${writableBytes(this.#request.memoryMb, limits.writable.length)} bytes (half of memoryMb shared by the writable paths, and counted in it)`,
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
  return signal ? `killed by ${signal}` : describeExitStatus(exit.code);
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
