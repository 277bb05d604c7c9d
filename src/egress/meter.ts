/**
 * One job's network accounting: requests sent, body bytes each way, and the refusals, kept in the
 * isolate that hosts the job's gateway (the dispatcher in production, the runner Worker locally).
 * Each call of the gateway entrypoint is a fresh object, so the counts cannot live there: the
 * entrypoint finds its job's meter by execution id, exactly as JobBindings finds its BindingSession.
 * The runner reads `report()` after the job and hands it back with the runner reply.
 */
import { z } from "zod";
import { MAX_NAME_CHARS } from "../untrusted-output.ts";
import type { EgressRule } from "./policy.ts";

/** Refusals kept for the result; the count goes on past it. */
const MAX_RECORDED_REFUSALS = 20;
/**
 * A refusal's message is one sentence naming a host; the host is the job's text (a URL may carry a
 * host of a million characters), so both are cut before they are kept for the result.
 */
const MAX_REFUSAL_MESSAGE_CHARS = 1024;

export interface EgressRefusal {
  rule: EgressRule;
  host: string;
  message: string;
}

/** What the dispatcher learns of a job's network use (the `egress` part of a runner reply). */
export const EgressReport = z.object({
  requests: z.number().int().min(0),
  bytesSent: z.number().int().min(0),
  bytesReceived: z.number().int().min(0),
  refusedCount: z.number().int().min(0),
  refusals: z.array(z.object({ rule: z.string(), host: z.string(), message: z.string() })),
});
export type EgressReport = z.infer<typeof EgressReport>;

export class EgressMeter {
  readonly executionId: string;
  readonly #refusals: EgressRefusal[] = [];
  readonly #abort = new AbortController();
  #requests = 0;
  #bytesSent = 0;
  #bytesReceived = 0;
  #refusedCount = 0;
  /** Request body bytes the gateway holds in memory for this job right now. */
  #held = 0;

  constructor(executionId: string) {
    this.executionId = executionId;
  }

  get requests(): number {
    return this.#requests;
  }

  /** Body bytes both ways: what `maxBytes` bounds. */
  get bytes(): number {
    return this.#bytesSent + this.#bytesReceived;
  }

  /** Aborted when the job ends, so that no upstream request outlives it. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  get closed(): boolean {
    return this.#abort.signal.aborted;
  }

  countRequest(): void {
    this.#requests++;
  }

  countBytes(direction: "sent" | "received", bytes: number): void {
    if (direction === "sent") this.#bytesSent += bytes;
    else this.#bytesReceived += bytes;
  }

  /** Takes `bytes` from the job's allowance of held body bytes; false (nothing taken) past `max`. */
  hold(bytes: number, max: number): boolean {
    if (this.#held + bytes > max) return false;
    this.#held += bytes;
    return true;
  }

  releaseHeld(bytes: number): void {
    this.#held = Math.max(0, this.#held - bytes);
  }

  /** Request body bytes held in memory for this job's requests in flight. */
  get held(): number {
    return this.#held;
  }

  refuse(refusal: EgressRefusal): void {
    this.#refusedCount++;
    if (this.#refusals.length < MAX_RECORDED_REFUSALS) {
      this.#refusals.push({
        rule: refusal.rule,
        host: refusal.host.slice(0, MAX_NAME_CHARS),
        message: refusal.message.slice(0, MAX_REFUSAL_MESSAGE_CHARS),
      });
    }
  }

  report(): EgressReport {
    return {
      requests: this.#requests,
      bytesSent: this.#bytesSent,
      bytesReceived: this.#bytesReceived,
      refusedCount: this.#refusedCount,
      refusals: this.#refusals.map((refusal) => ({ ...refusal })),
    };
  }

  close(): void {
    this.#abort.abort(new Error("the job has ended"));
  }
}

/** Meters of the jobs this isolate hosts the gateway for, by execution id. */
const activeMeters = new Map<string, EgressMeter>();

/**
 * Makes a job's meter reachable to its gateway for as long as the job runs. The undo forgets it and
 * closes it: upstream requests still in flight are aborted, later gateway calls are refused.
 */
export function activateEgressMeter(meter: EgressMeter): () => void {
  activeMeters.set(meter.executionId, meter);
  return () => {
    if (activeMeters.get(meter.executionId) === meter) activeMeters.delete(meter.executionId);
    meter.close();
  };
}

export function activeEgressMeter(executionId: string): EgressMeter | undefined {
  return activeMeters.get(executionId);
}
