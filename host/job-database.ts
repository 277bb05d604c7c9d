/**
 * The jobs' database (JOB_DB) for `npm run dev`, in a workerd process of its own (through Miniflare,
 * running workers/job-database), on the same files `wrangler dev` would use (under
 * `.wrangler/state/v3`), so `wrangler d1 execute JOB_DB --local` sees what jobs wrote.
 *
 * Why: local workerd has no time limit for a SQL statement, and in the dispatcher's process D1 runs on
 * the dispatcher's only thread. A statement the SQL policy cannot bound (a join of a tenant's own large
 * tables) stopped every request until it ended.
 *
 * Statements run one at a time, in arrival order, as D1 runs them anyway; queueing them here means
 * each one's clock starts when it is sent to the database. A statement still running KILL_GRACE_MS
 * after its job's deadline (at most MAX_STATEMENT_MS) is stopped with the process, which starts again
 * on the same files; SQLite rolls back the transaction it cut. A statement still waiting at its job's
 * deadline is answered without running, and so is one whose caller has gone away before it was sent:
 * nothing is sent after its answer was given.
 */
import { randomUUID } from "node:crypto";
import { convertV4MiniflareOptions, Miniflare } from "miniflare";
import { JobDatabaseAnswer, type JobDatabaseQuery } from "../src/bindings/job-database-protocol.ts";

/** How long past its job's deadline a statement may run before the database process is killed. */
export const KILL_GRACE_MS = 1_000;
/** A statement's longest run, whatever deadline it states (production D1 stops a query at 30 s). */
export const MAX_STATEMENT_MS = 30_000;
/** The database id of JOB_DB in wrangler.toml: the key of its file under the persist directory. */
export const JOB_DB_ID = "00000000-0000-0000-0000-000000000001";
const COMPATIBILITY_DATE = "2026-10-20";

export interface JobDatabaseOptions {
  /** A local state directory (wrangler dev's is `.wrangler/state/v3`). */
  persistDir: string;
  /** The bundled workers/job-database Worker. */
  script: string;
}

interface Instance {
  mf: Miniflare;
  url: URL;
}

interface Waiting {
  query: JobDatabaseQuery;
  answer: (answer: JobDatabaseAnswer) => void;
  /** Answered already (its deadline passed, its caller went away, the host closed): never sent. */
  settled: boolean;
  expiry: NodeJS.Timeout;
}

/** setTimeout's longest delay; a longer one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const DEADLINE_PASSED: JobDatabaseAnswer = {
  ok: false,
  message: "its job's deadline passed before the statement could run",
};

export class JobDatabaseProcess {
  readonly #options: JobDatabaseOptions;
  readonly #token = randomUUID();
  #instance: Promise<Instance>;
  readonly #waiting: Waiting[] = [];
  #draining = false;
  #closed = false;
  #restarts = 0;

  private constructor(options: JobDatabaseOptions) {
    this.#options = options;
    this.#instance = this.#boot();
  }

  static async start(options: JobDatabaseOptions): Promise<JobDatabaseProcess> {
    const database = new JobDatabaseProcess(options);
    await database.#instance;
    return database;
  }

  /** How many times a statement past its deadline had the process restarted. */
  get restarts(): number {
    return this.#restarts;
  }

  /**
   * `gone`: aborts when the caller stops waiting; a statement not yet sent is then dropped (one
   * already sent runs on, bounded by its deadline).
   */
  query(query: JobDatabaseQuery, gone?: AbortSignal): Promise<JobDatabaseAnswer> {
    return new Promise((resolve) => {
      const waiting: Waiting = {
        query,
        settled: false,
        answer: (answer) => {
          waiting.settled = true;
          clearTimeout(waiting.expiry);
          resolve(answer);
        },
        expiry: setTimeout(
          () => waiting.answer(DEADLINE_PASSED),
          Math.min(MAX_TIMER_MS, Math.max(0, query.deadline - Date.now())),
        ),
      };
      const leave = () => waiting.answer({ ok: false, message: "the caller stopped waiting" });
      if (gone?.aborted) return leave();
      gone?.addEventListener("abort", leave);
      if (this.#closed) return waiting.answer({ ok: false, message: "the local job database is closing" });
      this.#waiting.push(waiting);
      void this.#drain();
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const waiting of this.#waiting.splice(0)) {
      waiting.answer({ ok: false, message: "the local job database is closing" });
    }
    const instance = await this.#instance.catch(() => undefined);
    await instance?.mf.dispose().catch(() => undefined);
  }

  async #drain(): Promise<void> {
    if (this.#draining) return;
    this.#draining = true;
    try {
      for (let next = this.#waiting.shift(); next; next = this.#waiting.shift()) {
        if (next.settled) continue;
        // #send answers every failure it knows as data; anything else must not end the host either.
        next.answer(
          await this.#send(next).catch((error: unknown) => ({
            ok: false as const,
            message: `the local job database failed: ${error instanceof Error ? error.message : String(error)}`,
          })),
        );
      }
    } finally {
      this.#draining = false;
    }
  }

  /**
   * One statement (or batch) in the database process, stopped with the process past its time. Until
   * it is sent, it can still be answered without running: its deadline, its caller leaving.
   */
  async #send(waiting: Waiting): Promise<JobDatabaseAnswer> {
    const { mode, statements, deadline } = waiting.query;
    const current = this.#instance;
    let instance: Instance;
    try {
      instance = await current;
    } catch {
      this.#replace(current, () => this.#boot());
      return { ok: false, message: "the local job database could not start" };
    }
    // Answered meanwhile (a restart outlasted its deadline, or its caller left): it must not run.
    if (waiting.settled) return DEADLINE_PASSED;
    if (Date.now() >= deadline) return DEADLINE_PASSED;
    clearTimeout(waiting.expiry);
    const controller = new AbortController();
    const budget = Math.min(Math.max(0, deadline - Date.now()), MAX_STATEMENT_MS) + KILL_GRACE_MS;
    const timer = setTimeout(() => controller.abort(), budget);
    let response: Response;
    try {
      response = await fetch(new URL("/query", instance.url), {
        method: "POST",
        headers: { authorization: `Bearer ${this.#token}`, "content-type": "application/json" },
        body: JSON.stringify({ mode, statements }),
        signal: controller.signal,
      });
    } catch {
      if (controller.signal.aborted) {
        this.#restarts++;
        this.#replace(current, () =>
          instance.mf
            .dispose()
            .catch(() => undefined)
            .then(() => this.#boot()),
        );
        return {
          ok: false,
          message: `the statement was still running ${KILL_GRACE_MS} ms past its job's deadline; the database process was stopped and what it was writing rolled back`,
        };
      }
      // The process died (a crash; a result too large for its memory?). Miniflare starts it again
      // by itself; if that fails, the next statement starts another.
      this.#replace(current, () =>
        instance.mf.ready.then(
          (url) => ({ mf: instance.mf, url }),
          async (error: unknown) => {
            await instance.mf.dispose().catch(() => undefined);
            throw error;
          },
        ),
      );
      return {
        ok: false,
        message: "the local job database process stopped while the statement was sent or ran; it did not complete",
      };
    } finally {
      clearTimeout(timer);
    }
    const answer = JobDatabaseAnswer.safeParse(await response.json().catch(() => null));
    if (!response.ok || !answer.success) {
      return { ok: false, message: `the local job database answered HTTP ${response.status} without a result` };
    }
    return answer.data;
  }

  /** Starts `next` in place of `current` unless another failure has already replaced it, or closed. */
  #replace(current: Promise<Instance>, next: () => Promise<Instance>): void {
    if (this.#closed || this.#instance !== current) return;
    this.#instance = next();
    // A start that fails is answered to the next statement (#send); unhandled, it would end the host.
    this.#instance.catch((error: unknown) => console.error("[cordon-host] the job database did not start", error));
  }

  /**
   * Miniflare takes V8 flags from the process environment, which the runner processes set to their
   * heap cap (runner-process.ts); the host starts this process after them, so it gets the same cap:
   * a statement whose rows fill it stops this process, not the host.
   */
  async #boot(): Promise<Instance> {
    const mf = new Miniflare(
      convertV4MiniflareOptions({
        host: "127.0.0.1",
        port: 0,
        modules: true,
        script: this.#options.script,
        compatibilityDate: COMPATIBILITY_DATE,
        bindings: { TOKEN: this.#token },
        d1Databases: { JOB_DB: JOB_DB_ID },
        resourcePersistencePath: this.#options.persistDir,
      }),
    );
    try {
      return { mf, url: await mf.ready };
    } catch (error) {
      // Miniflare's own loopback server stays up until disposed.
      await mf.dispose().catch(() => undefined);
      throw error;
    }
  }
}
