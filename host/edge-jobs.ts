/**
 * Edge jobs in flight on the host, and the relay of their binding calls.
 *
 * A job's bindings (DB, KV) live in the dispatcher, which the runner process cannot reach. So the
 * dispatcher drives a job as a conversation of plain requests it starts itself:
 *
 *   dispatcher → POST /v1/edge/run                 → the job's next event
 *   dispatcher → POST /v1/edge/jobs/:id/answer     → (answers one call) the job's next event
 *   runner     → POST /v1/edge/binding-call        → blocks until the dispatcher has answered
 *   dispatcher → POST /v1/edge/jobs/:id/cancel     → kills the runner process holding the job
 *
 * An event is `{ type: "call", callId, call }` or `{ type: "done", reply }`. Calls of one job are
 * delivered one at a time, in order. Loopback HTTP only: it survives runner restarts.
 */
import { randomUUID } from "node:crypto";
import { EarlyCancels } from "./early-cancels.ts";
import type { Cordon, EdgeCordons } from "./edge-cordons.ts";

export type EdgeEvent = { type: "call"; callId: string; call: unknown } | { type: "done"; reply: unknown };

/** A finished job whose last event nobody collected is forgotten after this long. */
const UNCOLLECTED_TTL_MS = 60_000;

interface Job {
  events: EdgeEvent[];
  waiter: ((event: EdgeEvent) => void) | undefined;
  pending: Map<string, (answer: unknown) => void>;
  finished: boolean;
}

export class EdgeJobs {
  readonly #edge: EdgeCordons;
  readonly #jobs = new Map<string, Job>();
  readonly #cancelledEarly = new EarlyCancels();

  constructor(edge: EdgeCordons) {
    this.#edge = edge;
  }

  /** `deadline`: epoch ms at which the job's time is up, waiting for a runner included. */
  start(executionId: string, cordon: Cordon, body: string, deadline: number): Promise<EdgeEvent> {
    if (this.#jobs.has(executionId)) return Promise.resolve(done({ ok: false, error: duplicate(executionId) }));
    if (this.#cancelledEarly.take(executionId)) {
      const message = "the job was cancelled before it reached its runner; it never started";
      return Promise.resolve(done({ ok: false, error: { code: "SANDBOX_UNAVAILABLE", message } }));
    }
    const job: Job = { events: [], waiter: undefined, pending: new Map(), finished: false };
    this.#jobs.set(executionId, job);
    void this.#edge.run(cordon, body, deadline, executionId).then((outcome) => {
      const reply: unknown =
        outcome.kind === "reply"
          ? parseOr(outcome.body)
          : { ok: false, error: { code: outcome.code, message: outcome.message } };
      job.finished = true;
      // A call still waiting for its answer belongs to a runner that is gone.
      for (const resolve of job.pending.values())
        resolve({ ok: false, error: { code: "SANDBOX_RUNNER_CRASHED", message: "the job ended" } });
      job.pending.clear();
      this.#push(job, done(reply));
      setTimeout(() => this.#jobs.delete(executionId), UNCOLLECTED_TTL_MS).unref();
    });
    return this.#next(executionId, job);
  }

  /** The dispatcher's answer to one call; resolves with the job's next event. */
  answer(executionId: string, callId: string, answer: unknown): Promise<EdgeEvent> | undefined {
    const job = this.#jobs.get(executionId);
    if (!job) return undefined;
    job.pending.get(callId)?.(answer);
    job.pending.delete(callId);
    return this.#next(executionId, job);
  }

  /** Stops a running job by killing its runner process; a job not seen yet will not start. */
  cancel(executionId: string): Promise<boolean> {
    if (!this.#jobs.has(executionId)) this.#cancelledEarly.remember(executionId);
    return this.#edge.cancel(executionId);
  }

  /** A binding call from a runner; resolves with the dispatcher's answer. */
  relay(executionId: string, call: unknown): Promise<unknown> {
    const job = this.#jobs.get(executionId);
    if (!job || job.finished) {
      return Promise.resolve({ ok: false, error: { code: "SANDBOX_RUNNER_CRASHED", message: "no such running job" } });
    }
    const callId = randomUUID();
    return new Promise((resolve) => {
      job.pending.set(callId, resolve);
      this.#push(job, { type: "call", callId, call });
    });
  }

  #push(job: Job, event: EdgeEvent): void {
    const waiter = job.waiter;
    if (waiter) {
      job.waiter = undefined;
      waiter(event);
    } else {
      job.events.push(event);
    }
  }

  #next(executionId: string, job: Job): Promise<EdgeEvent> {
    const queued = job.events.shift();
    const event = queued ? Promise.resolve(queued) : new Promise<EdgeEvent>((resolve) => (job.waiter = resolve));
    return event.then((value) => {
      if (value.type === "done") this.#jobs.delete(executionId);
      return value;
    });
  }
}

function done(reply: unknown): EdgeEvent {
  return { type: "done", reply };
}

function duplicate(executionId: string) {
  return { code: "SANDBOX_RUNNER_CRASHED", message: `job ${executionId} is already running` };
}

function parseOr(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return { ok: false, error: { code: "SANDBOX_RUNNER_CRASHED", message: "the runner sent a malformed reply" } };
  }
}
