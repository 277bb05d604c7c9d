/**
 * One ExecutionTracker per asynchronous execution: the job's state machine (running → succeeded |
 * failed | timed_out | cancelled), its deadline as an alarm, and its final result. The job runs from
 * here, so it outlives the request that submitted it, and a result is stored whatever happens: when
 * the runner answers, when the caller cancels, or, if nothing answers, when the alarm fires.
 * (Synchronous jobs run in their request, journaled by their tenant's ledger: tenant-ledger.ts.)
 *
 * State lives in SQLite with a schema version. The RPC façade returns data; the work is in
 * src/jobs/homes.ts.
 */
import { DurableObject } from "cloudflare:workers";
import { migrateSqlite } from "./sqlite-schema";
import { textParts } from "./stored-text";
import { ErrorCode } from "../errors";
import { cancelOnItsHome, durableHome, REPORT_GRACE_MS, runOnItsHome, type AdmittedJob } from "../jobs/homes";
import { abandonedResult } from "../results";
import type { ExecutionProgress, ExecutionResult } from "../schemas";
import { releaseLease } from "../service/admission";
import { deleteExecution, readStoredResult, saveExecution } from "../store/executions";
import { storableResult } from "../store/storable";

/** What the dispatcher hands the tracker: everything needed to run the job and record it. */
export type JobTicket = AdmittedJob;

export type TrackedState =
  | { found: false }
  | { found: true; tenantId: string; finished: false; progress: ExecutionProgress }
  | { found: true; tenantId: string; finished: true; result: ExecutionResult };

/**
 * The tracker as its callers see it. `DurableObjectStub<ExecutionTracker>` maps the JSON-typed results
 * too deeply for TypeScript, so stubs are typed with this plain interface, which the class implements.
 */
export interface ExecutionTrackerApi {
  submit(ticket: JobTicket): Promise<ExecutionProgress>;
  state(): Promise<TrackedState>;
  wait(timeoutMs: number): Promise<TrackedState>;
  cancel(): Promise<TrackedState>;
  forget(): Promise<boolean>;
}

/** A failed write of the result to the execution log is tried again this much later, then less often. */
const LOG_RETRY_MS = 30_000;
const LOG_RETRY_MAX_MS = 60 * 60_000;

const MIGRATIONS: readonly string[] = [
  `CREATE TABLE job (
     id TEXT PRIMARY KEY,
     tenant_id TEXT NOT NULL,
     status TEXT NOT NULL,
     ticket_json TEXT NOT NULL,
     result_json TEXT
   );`,
  // The ticket in parts (stored-text.ts); job.ticket_json stays '' for a ticket kept here.
  `CREATE TABLE ticket_part (seq INTEGER PRIMARY KEY, text TEXT NOT NULL);`,
];

export class ExecutionTracker extends DurableObject<Env> implements ExecutionTrackerApi {
  readonly #sql: SqlStorage;
  readonly #waiters = new Set<() => void>();
  /** Log writes of the job's result under way (forget waits for them). */
  readonly #logWrites = new Set<Promise<unknown>>();
  /** The job's run is under way in this object (its slot is freed when it returns). */
  #running = false;
  /** Failed log writes in a row: each retry waits twice as long, up to LOG_RETRY_MAX_MS. */
  #logFailures = 0;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    migrateSqlite(this.#sql, MIGRATIONS);
  }

  /** Starts the job and answers at once. */
  async submit(ticket: JobTicket): Promise<ExecutionProgress> {
    await this.#begin(ticket);
    this.#running = true;
    this.ctx.waitUntil(this.#execute(ticket).finally(() => (this.#running = false)));
    return progressOf(ticket);
  }

  async state(): Promise<TrackedState> {
    return this.#state();
  }

  #state(): TrackedState {
    const row = this.#row();
    if (!row) return { found: false };
    if (row.result_json !== null) {
      return {
        found: true,
        tenantId: row.tenant_id,
        finished: true,
        result: readStoredResult(row.result_json),
      };
    }
    return {
      found: true,
      tenantId: row.tenant_id,
      finished: false,
      progress: progressOf(this.#ticket(row)),
    };
  }

  /** The state once the job has finished, or after `timeoutMs`, whichever comes first. */
  async wait(timeoutMs: number): Promise<TrackedState> {
    const current = this.#state();
    if (!current.found || current.finished) return current;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      const waiters = this.#waiters;
      function done() {
        clearTimeout(timer);
        waiters.delete(done);
        resolve();
      }
      waiters.add(done);
    });
    return this.#state();
  }

  /** Ends a running job as cancelled (its runner is stopped where the platform allows). */
  async cancel(): Promise<TrackedState> {
    const row = this.#row();
    if (!row || row.result_json !== null) return this.#state();
    const ticket = this.#ticket(row);
    // Its slot stays held until the run returns (#execute): a cancelled isolate in production runs on
    // to its CPU limit, and a slot freed at once would let a tenant run any number of jobs at a time.
    await this.#finish(
      ticket,
      await this.#abandoned(ticket, ErrorCode.SANDBOX_CANCELLED, "the job was cancelled by its caller"),
      { holdSlot: true },
    );
    await cancelOnItsHome(durableHome(this.env, this.ctx), ticket.prepared);
    return this.#state();
  }

  /** Deletes the stored artifacts of a finished job: this object's state and the execution log row. */
  async forget(): Promise<boolean> {
    const row = this.#row();
    if (!row || row.result_json === null) return false;
    // The result is set before its log row is written: a row still being written would land after
    // the deletion and bring the job back.
    await Promise.all(this.#logWrites);
    await deleteExecution(this.env.DB, row.tenant_id, row.id);
    this.#sql.exec("DELETE FROM job");
    this.#sql.exec("DELETE FROM ticket_part");
    return true;
  }

  /**
   * Nothing answered by the deadline: the job ends as timed out, with a stored result. For a job
   * already finished, its log write failed: it is tried again, and the slot freed once it is written.
   */
  override async alarm(): Promise<void> {
    const row = this.#row();
    if (!row) return;
    if (row.result_json !== null) {
      // A run still under way (a cancelled one, in production) frees the slot itself when it returns.
      const logged = await this.#writeLog(readStoredResult(row.result_json));
      if (logged && !this.#running) await releaseLease(this.env, row.tenant_id, row.id);
      return;
    }
    const ticket = this.#ticket(row);
    await this.#finish(
      ticket,
      await this.#abandoned(
        ticket,
        ErrorCode.SANDBOX_TIMEOUT,
        "the runner never reported; the job was given up at its deadline",
      ),
    );
    // Given up here, it must not run on there (a job still waiting on the local host, say).
    await cancelOnItsHome(durableHome(this.env, this.ctx), ticket.prepared).catch(() => undefined);
  }

  async #begin(ticket: JobTicket): Promise<void> {
    this.#sql.exec(
      "INSERT INTO job (id, tenant_id, status, ticket_json) VALUES (?, ?, 'running', '')",
      ticket.prepared.executionId,
      ticket.tenantId,
    );
    textParts(JSON.stringify(ticket)).forEach((text, seq) => {
      this.#sql.exec("INSERT INTO ticket_part (seq, text) VALUES (?, ?)", seq, text);
    });
    await this.ctx.storage.setAlarm(ticket.acceptedAt + ticket.prepared.limits.timeoutMs + REPORT_GRACE_MS);
  }

  async #execute(ticket: JobTicket): Promise<void> {
    const result = await runOnItsHome(durableHome(this.env, this.ctx), ticket);
    // A job cancelled (or given up) meanwhile keeps the result it already has, and one deleted after
    // its cancellation stays deleted; either way its run is over now.
    const current = this.#state();
    if (!current.found || current.finished) {
      await releaseLease(this.env, ticket.tenantId, ticket.prepared.executionId);
      return;
    }
    await this.#finish(ticket, storableResult(result));
  }

  async #finish(ticket: JobTicket, result: ExecutionResult, options: { holdSlot?: boolean } = {}): Promise<void> {
    this.#sql.exec(
      "UPDATE job SET status = ?, result_json = ? WHERE id = ?",
      result.status,
      JSON.stringify(result),
      result.id,
    );
    // Only a running job's progress, cancel and alarm read the ticket.
    this.#sql.exec("DELETE FROM ticket_part");
    // All done before the answer, so a caller that reads, lists or sends its next job on it finds the
    // log row written and its concurrency slot free. The row is written before the slot is freed: the
    // ledger sends lookups here only while the slot is held, so a job is always found in one place.
    const logged = await this.#writeLog(result);
    if (logged && !options.holdSlot) await releaseLease(this.env, ticket.tenantId, ticket.prepared.executionId);
    for (const wake of [...this.#waiters]) wake();
  }

  /**
   * Writes the result's execution log row. If that fails the alarm tries again, and the slot stays
   * held meanwhile, so lookups keep coming here and find the result.
   */
  async #writeLog(result: ExecutionResult): Promise<boolean> {
    const write = saveExecution(this.env.DB, result, { tracked: true });
    const pending = write.catch(() => undefined);
    this.#logWrites.add(pending);
    try {
      const [saved] = await Promise.allSettled([write, this.ctx.storage.deleteAlarm()]);
      if (saved.status === "fulfilled") {
        this.#logFailures = 0;
        return true;
      }
      this.#logFailures++;
      console.error(JSON.stringify({ event: "execution_log_failed", id: result.id, message: String(saved.reason) }));
      const retryMs = Math.min(LOG_RETRY_MAX_MS, LOG_RETRY_MS * 2 ** (this.#logFailures - 1));
      await this.ctx.storage.setAlarm(Date.now() + retryMs);
      return false;
    } finally {
      this.#logWrites.delete(pending);
    }
  }

  async #abandoned(
    ticket: JobTicket,
    code: typeof ErrorCode.SANDBOX_CANCELLED | typeof ErrorCode.SANDBOX_TIMEOUT,
    message: string,
  ) {
    const record = {
      id: ticket.prepared.executionId,
      tenantId: ticket.tenantId,
      codeSha256: ticket.codeSha256,
      createdAt: new Date(ticket.acceptedAt),
      finishedAt: new Date(),
    };
    return abandonedResult(record, ticket.job, ticket.prepared, code, message);
  }

  #ticket(row: { ticket_json: string }): JobTicket {
    const parts = this.#sql.exec<{ text: string }>("SELECT text FROM ticket_part ORDER BY seq").toArray();
    return JSON.parse(parts.length > 0 ? parts.map((part) => part.text).join("") : row.ticket_json) as JobTicket;
  }

  #row() {
    return this.#sql
      .exec<{ id: string; tenant_id: string; status: string; ticket_json: string; result_json: string | null }>(
        "SELECT * FROM job",
      )
      .toArray()[0];
  }
}

function progressOf(ticket: JobTicket): ExecutionProgress {
  return {
    id: ticket.prepared.executionId,
    status: "running",
    runtime: ticket.prepared.runtime,
    trustLevel: ticket.prepared.trustLevel,
    createdAt: new Date(ticket.acceptedAt).toISOString(),
  };
}
