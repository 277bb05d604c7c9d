/**
 * Cancels that arrived before their job: a refused early start, or a job given up, is cancelled by
 * the dispatcher at once, and its run may still be on its way to this host. A job whose cancel came
 * first never starts. Remembered for longer than any job's timeout; past MAX_REMEMBERED the oldest
 * is forgotten (only the dispatcher sends cancels, each for a job its tenant's limits admitted).
 */
const REMEMBERED_MS = 15 * 60_000;
const MAX_REMEMBERED = 10_000;

export class EarlyCancels {
  readonly #until = new Map<string, number>();

  remember(executionId: string): void {
    if (this.#until.size >= MAX_REMEMBERED) this.#until.delete(this.#until.keys().next().value ?? "");
    this.#until.set(executionId, Date.now() + REMEMBERED_MS);
  }

  /** Whether this job was cancelled before it arrived (and forgets it: an id arrives once). */
  take(executionId: string): boolean {
    const until = this.#until.get(executionId);
    if (until === undefined) return false;
    this.#until.delete(executionId);
    return until > Date.now();
  }
}
