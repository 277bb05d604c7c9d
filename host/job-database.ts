/**
 * The jobs' database (JOB_DB) for `npm run dev`, in a workerd process of its own (through Miniflare),
 * on the same files `wrangler dev` would use (under `.wrangler/state/v3`), so `wrangler d1 execute
 * JOB_DB --local` sees what jobs wrote.
 *
 * Why: local workerd has no time limit for a SQL statement, and in the dispatcher's process D1 runs on
 * the dispatcher's only thread. A statement the SQL policy cannot bound (a join of a tenant's own large
 * tables) stopped every request until it ended. Here a statement still running KILL_GRACE_MS after its
 * job's deadline is stopped with this process, which is started again on the same files; SQLite rolls
 * back the transaction it interrupted. Statements that were running beside it in this process end with
 * an error too (their jobs see "restarted"), as they would if D1 restarted in production.
 */
import { randomUUID } from "node:crypto";
import { convertV4MiniflareOptions, Miniflare } from "miniflare";
import { JobDatabaseAnswer, type SqlStatement } from "../src/bindings/job-database-protocol.ts";

/** How long past its job's deadline a statement may run before the database process is killed. */
export const KILL_GRACE_MS = 1_000;
/** A statement's longest run, whatever deadline it states (production D1 stops a query at 30 s). */
export const MAX_STATEMENT_MS = 30_000;
/** The database id of JOB_DB in wrangler.toml: the key of its file under the persist directory. */
export const JOB_DB_ID = "00000000-0000-0000-0000-000000000001";
const COMPATIBILITY_DATE = "2026-10-20";

export interface JobDatabaseQuery {
  mode: "read" | "batch";
  statements: SqlStatement[];
  /** Epoch ms: the job's deadline. */
  deadline: number;
}

const SCRIPT = `
export default {
  async fetch(request, env) {
    if (request.headers.get("authorization") !== "Bearer " + env.TOKEN) return new Response("unauthorized", { status: 401 });
    const { mode, statements } = await request.json();
    try {
      const prepared = statements.map((s) => env.JOB_DB.prepare(s.sql).bind(...s.params));
      const results = mode === "read" ? [await prepared[0].all()] : await env.JOB_DB.batch(prepared);
      return Response.json({
        ok: true,
        results: results.map((r) => ({ results: r.results, meta: { changes: r.meta.changes ?? 0, size_after: r.meta.size_after ?? 0 } })),
      });
    } catch (error) {
      return Response.json({ ok: false, message: String(error?.message ?? error) });
    }
  },
};
`;

interface Instance {
  mf: Miniflare;
  url: URL;
}

export class JobDatabaseProcess {
  readonly #persistDir: string;
  readonly #token = randomUUID();
  #instance: Promise<Instance>;
  #restarts = 0;

  private constructor(persistDir: string) {
    this.#persistDir = persistDir;
    this.#instance = this.#boot();
  }

  /** `persistDir`: a local state directory (wrangler dev's is `.wrangler/state/v3`). */
  static async start(persistDir: string): Promise<JobDatabaseProcess> {
    const database = new JobDatabaseProcess(persistDir);
    await database.#instance;
    return database;
  }

  /** How many times a statement past its deadline had the process restarted. */
  get restarts(): number {
    return this.#restarts;
  }

  async query({ mode, statements, deadline }: JobDatabaseQuery): Promise<JobDatabaseAnswer> {
    const current = this.#instance;
    let instance: Instance;
    try {
      instance = await current;
    } catch {
      if (this.#instance === current) this.#instance = this.#boot();
      return { ok: false, message: "the local job database is starting; try again" };
    }
    const controller = new AbortController();
    const budget = Math.min(Math.max(0, deadline - Date.now()), MAX_STATEMENT_MS) + KILL_GRACE_MS;
    const timer = setTimeout(() => controller.abort(), budget);
    try {
      const response = await fetch(new URL("/query", instance.url), {
        method: "POST",
        headers: { authorization: `Bearer ${this.#token}`, "content-type": "application/json" },
        body: JSON.stringify({ mode, statements }),
        signal: controller.signal,
      });
      return JobDatabaseAnswer.parse(await response.json());
    } catch {
      if (controller.signal.aborted) {
        this.#restart(current, instance);
        return {
          ok: false,
          message: `the statement was still running ${KILL_GRACE_MS} ms past its job's deadline; it was stopped`,
        };
      }
      return { ok: false, message: "the local job database restarted while the statement ran; try again" };
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    const instance = await this.#instance.catch(() => undefined);
    await instance?.mf.dispose().catch(() => undefined);
  }

  /** Kills the process running `dead` (once, whoever notices first) and starts another on the same files. */
  #restart(current: Promise<Instance>, dead: Instance): void {
    if (this.#instance !== current) return;
    this.#restarts++;
    this.#instance = dead.mf
      .dispose()
      .catch(() => undefined)
      .then(() => this.#boot());
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
        script: SCRIPT,
        compatibilityDate: COMPATIBILITY_DATE,
        bindings: { TOKEN: this.#token },
        d1Databases: { JOB_DB: JOB_DB_ID },
        resourcePersistencePath: this.#persistDir,
      }),
    );
    return { mf, url: await mf.ready };
  }
}
