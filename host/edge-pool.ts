/**
 * A pool of edge runner processes. Each runs one job at a time; a job waits in FIFO order for a free
 * runner, but never past its own deadline: a job still waiting then ends as SANDBOX_TIMEOUT without
 * starting, and so does one cancelled while it waits. Otherwise a burst of runaway jobs left a
 * backlog that ran long after its requests had given up (and after their tenant's concurrency slots
 * were free again), and timed out every other tenant's jobs queued behind it. A runner that failed
 * (killed at a deadline, out of memory, crashed) is replaced in the background, so the pool heals
 * while other runners keep serving.
 */
import { RunnerProcess, type RunOutcome, type RunnerOptions } from "./runner-process.ts";
import { WaitQueue } from "./wait-queue.ts";

/** Jobs that may wait per runner; past that a job is refused at once (SANDBOX_UNAVAILABLE). */
const MAX_WAITING_PER_RUNNER = 16;

export class EdgePool {
  readonly #options: RunnerOptions;
  readonly #size: number;
  readonly #idle: RunnerProcess[] = [];
  readonly #waiting = new WaitQueue<RunnerProcess>();
  readonly #busy = new Map<string, RunnerProcess>();
  #closed = false;
  #replaced = 0;

  constructor(options: RunnerOptions, size: number) {
    this.#options = options;
    this.#size = size;
  }

  async start(): Promise<void> {
    await Promise.all(Array.from({ length: this.#size }, () => this.#spawn()));
  }

  get stats(): { size: number; idle: number; waiting: number; replaced: number } {
    return { size: this.#size, idle: this.#idle.length, waiting: this.#waiting.length, replaced: this.#replaced };
  }

  /** `deadline`: epoch ms at which the job's time is up, waiting included. */
  async run(body: string, deadline: number, executionId: string): Promise<RunOutcome> {
    const runner = await this.#acquire(executionId, deadline);
    if (!(runner instanceof RunnerProcess)) return runner;
    this.#busy.set(executionId, runner);
    const outcome = await runner.run(body, deadline).finally(() => this.#busy.delete(executionId));
    if (runner.healthy) {
      this.#release(runner);
    } else {
      this.#replaced++;
      void runner.dispose().then(() => this.#spawn());
    }
    return outcome;
  }

  /** Kills the process running this job, or ends its wait; the pool replaces a killed runner. */
  async cancel(executionId: string): Promise<boolean> {
    if (this.#waiting.leave(executionId)) return true;
    const runner = this.#busy.get(executionId);
    if (!runner) return false;
    await runner.dispose();
    return true;
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#idle.splice(0).map((runner) => runner.dispose()));
  }

  async #acquire(executionId: string, deadline: number): Promise<RunnerProcess | RunOutcome> {
    const runner = this.#idle.pop();
    if (runner) return runner;
    if (this.#waiting.length >= this.#size * MAX_WAITING_PER_RUNNER) {
      const message = `all ${this.#size} runners of this cordon are busy and ${this.#waiting.length} jobs wait`;
      return notStarted("SANDBOX_UNAVAILABLE", message);
    }
    const outcome = await this.#waiting.wait(executionId, deadline);
    if ("granted" in outcome) return outcome.granted;
    return outcome.ended === "left"
      ? notStarted("SANDBOX_UNAVAILABLE", "the job was cancelled before a runner was free; it never started")
      : notStarted("SANDBOX_TIMEOUT", "the job waited for a free runner until its deadline; it never started");
  }

  #release(runner: RunnerProcess): void {
    if (this.#closed) {
      void runner.dispose();
      return;
    }
    if (!this.#waiting.handOver(runner)) this.#idle.push(runner);
  }

  async #spawn(): Promise<void> {
    if (this.#closed) return;
    try {
      this.#release(await RunnerProcess.start(this.#options));
    } catch (error) {
      console.error("[cordon-host] could not start an edge runner; retrying in 1 s", error);
      setTimeout(() => void this.#spawn(), 1_000);
    }
  }
}

function notStarted(code: "SANDBOX_TIMEOUT" | "SANDBOX_UNAVAILABLE", message: string): RunOutcome {
  return { kind: "failed", code, message };
}
