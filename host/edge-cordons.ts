/**
 * One edge runner pool per trust cordon: jobs of different trust levels never share a runner process.
 */
import { EdgePool } from "./edge-pool.ts";
import type { RunOutcome, RunnerOptions } from "./runner-process.ts";

export const CORDONS = ["high", "medium", "low", "untrusted"] as const;
export type Cordon = (typeof CORDONS)[number];

export function isCordon(value: unknown): value is Cordon {
  return typeof value === "string" && (CORDONS as readonly string[]).includes(value);
}

export class EdgeCordons {
  readonly #pools: Record<Cordon, EdgePool>;

  constructor(options: RunnerOptions, runnersPerCordon: number) {
    this.#pools = {
      high: new EdgePool(options, runnersPerCordon),
      medium: new EdgePool(options, runnersPerCordon),
      low: new EdgePool(options, runnersPerCordon),
      untrusted: new EdgePool(options, runnersPerCordon),
    };
  }

  async start(): Promise<void> {
    await Promise.all(CORDONS.map((cordon) => this.#pools[cordon].start()));
  }

  /** `deadline`: epoch ms at which the job's time is up. */
  run(cordon: Cordon, body: string, deadline: number, executionId: string): Promise<RunOutcome> {
    return this.#pools[cordon].run(body, deadline, executionId);
  }

  async cancel(executionId: string): Promise<boolean> {
    const cancelled = await Promise.all(CORDONS.map((cordon) => this.#pools[cordon].cancel(executionId)));
    return cancelled.some(Boolean);
  }

  get stats(): Record<Cordon, EdgePool["stats"]> {
    return {
      high: this.#pools.high.stats,
      medium: this.#pools.medium.stats,
      low: this.#pools.low.stats,
      untrusted: this.#pools.untrusted.stats,
    };
  }

  async close(): Promise<void> {
    await Promise.all(CORDONS.map((cordon) => this.#pools[cordon].close()));
  }
}
