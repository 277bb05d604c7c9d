/**
 * Jobs waiting, first come first served, for what only one of them can have at a time (an edge
 * runner, a node sandbox slot), each never past its own deadline and each free to leave.
 */
export type WaitOutcome<T> = { granted: T } | { ended: "deadline" | "left" };

interface Waiter<T> {
  executionId: string;
  settle(outcome: WaitOutcome<T>): void;
}

export class WaitQueue<T> {
  readonly #waiters: Waiter<T>[] = [];

  get length(): number {
    return this.#waiters.length;
  }

  /** `deadline`: epoch ms after which the job stops waiting. */
  wait(executionId: string, deadline: number): Promise<WaitOutcome<T>> {
    return new Promise((resolve) => {
      const waiter: Waiter<T> = {
        executionId,
        settle: (outcome) => {
          clearTimeout(timer);
          resolve(outcome);
        },
      };
      const timer = setTimeout(() => this.#end(waiter, "deadline"), Math.max(0, deadline - Date.now()));
      this.#waiters.push(waiter);
    });
  }

  /** Hands `item` to the job waiting longest; false when none waits. */
  handOver(item: T): boolean {
    const next = this.#waiters.shift();
    next?.settle({ granted: item });
    return next !== undefined;
  }

  /** Ends this job's wait without anything; false when it does not wait. */
  leave(executionId: string): boolean {
    const waiter = this.#waiters.find((entry) => entry.executionId === executionId);
    if (waiter) this.#end(waiter, "left");
    return waiter !== undefined;
  }

  #end(waiter: Waiter<T>, why: "deadline" | "left"): void {
    const index = this.#waiters.indexOf(waiter);
    if (index !== -1) this.#waiters.splice(index, 1);
    waiter.settle({ ended: why });
  }
}
