/**
 * A pool of edge runner processes. Each runs one job at a time; a job waits in FIFO order for a free
 * runner. A runner that failed (killed at a deadline, out of memory, crashed) is replaced in the
 * background, so the pool heals while other runners keep serving.
 */
import { RunnerProcess, type RunOutcome, type RunnerOptions } from "./runner-process.ts";

export class EdgePool {
  readonly #options: RunnerOptions;
  readonly #size: number;
  readonly #idle: RunnerProcess[] = [];
  readonly #waiting: ((runner: RunnerProcess) => void)[] = [];
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

  async run(body: string, timeoutMs: number, executionId: string): Promise<RunOutcome> {
    const runner = await this.#acquire();
    this.#busy.set(executionId, runner);
    const outcome = await runner.run(body, timeoutMs).finally(() => this.#busy.delete(executionId));
    if (runner.healthy) {
      this.#release(runner);
    } else {
      this.#replaced++;
      void runner.dispose().then(() => this.#spawn());
    }
    return outcome;
  }

  /** Kills the process running this job, if any; the pool replaces it. */
  async cancel(executionId: string): Promise<boolean> {
    const runner = this.#busy.get(executionId);
    if (!runner) return false;
    await runner.dispose();
    return true;
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#idle.splice(0).map((runner) => runner.dispose()));
  }

  #acquire(): Promise<RunnerProcess> {
    const runner = this.#idle.pop();
    if (runner) return Promise.resolve(runner);
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  #release(runner: RunnerProcess): void {
    if (this.#closed) {
      void runner.dispose();
      return;
    }
    const next = this.#waiting.shift();
    if (next) next(runner);
    else this.#idle.push(runner);
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
