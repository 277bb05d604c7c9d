/**
 * Cordon's TypeScript client: fetch only, so it works in Node 20+, browsers and Workers.
 *
 *   import { Cordon, CordonError } from "cordon/client";
 *   const cordon = new Cordon({ baseUrl: "https://cordon.example.com", apiKey: process.env.CORDON_KEY! });
 *   const result = await cordon.execute.code({ runtime: "edge", code, input });
 *
 * Types come from the same zod schemas the service validates with (type-only imports: the client
 * bundles no zod); its only runtime import is src/errors.ts (for the status map), which imports
 * nothing. A refused request or a failed job throws `CordonError` with the code and the status the
 * service answers it with; a job's result (`success: true`, including test cases that did not pass)
 * resolves.
 *
 * Retries: 429 and 503 refusals are retried after `Retry-After` (at most `maxRetries` times, never
 * waiting longer than `maxRetryDelayMs`): the job did not run. A 503 that carries a job's recorded
 * result (its `id`) is not: that job was accepted. A network failure is retried
 * only for idempotent calls (reads, wait, cancel, delete); a submitted job may have run, so it is
 * never sent twice. With `requestTimeoutMs`, a request that outlives it counts as a network failure.
 *
 * Every call takes `{ signal }`: aborting it ends the call at once (a fetch in flight, a backoff, a
 * wait's next poll) with `CLIENT_ABORTED`.
 */
import type { z } from "zod";
import { ERROR_STATUS, isErrorCode } from "../errors.ts";
/**
 * An error as the service sends it (`ErrorBody` of src/errors.ts), or one the client raises itself
 * (`CLIENT_WAIT_TIMEOUT`, `CLIENT_INVALID_RESPONSE`, `CLIENT_ABORTED`, `CLIENT_REQUEST_TIMEOUT`,
 * `CLIENT_NETWORK_ERROR`).
 */
interface WireError {
  code: string;
  message: string;
  [detail: string]: unknown;
}
import type {
  ExecutionProgress,
  ExecutionRequest,
  ExecutionResult,
  ListQuery,
  Usage,
  ValidateRequest,
} from "../schemas";
import type { ValidationReport } from "../service/executions";
import type { ExecutionPage } from "../store/executions";

export type ExecuteCodeRequest = z.input<typeof ExecutionRequest>;
export type ListExecutionsQuery = z.input<typeof ListQuery>;
export type ValidateCodeRequest = z.input<typeof ValidateRequest>;
export type { ExecutionResult, ExecutionPage, ExecutionProgress, Usage, ValidationReport };

export interface CordonOptions {
  baseUrl: string;
  apiKey: string;
  /** Defaults to the global fetch; pass a service binding's fetch or a test double's here. */
  fetch?: (request: Request) => Promise<Response>;
  /** Retries of 429/503 answers (default 2). */
  maxRetries?: number;
  /** The longest `Retry-After` the client will wait (default 10 000 ms); longer ones throw at once. */
  maxRetryDelayMs?: number;
  /**
   * How long one request may take to answer (default: no limit). It covers a synchronous job's run;
   * a wait's poll gets its poll time on top, since the service holds that request open on purpose.
   */
  requestTimeoutMs?: number;
}

/** Options every call takes. */
export interface CallOptions {
  /** Aborting it ends the call at once with `CLIENT_ABORTED`; the signal's reason is the error's `cause`. */
  signal?: AbortSignal;
}

export interface WaitOptions extends CallOptions {
  /** How long to wait for the job in all (default 60 000 ms), then `CLIENT_WAIT_TIMEOUT`. */
  timeoutMs?: number;
  /** How long the service may hold one poll open (100 ms to 30 s, default 30 s). */
  pollTimeoutMs?: number;
}

export class CordonError extends Error {
  override readonly name = "CordonError";
  readonly code: string;
  readonly status: number;
  readonly detail: Record<string, unknown>;
  /** Present when the job was accepted (it ran, or was recorded as failed). */
  readonly executionId: string | undefined;
  readonly logs: ExecutionResult["logs"] | undefined;
  readonly metrics: ExecutionResult["metrics"] | undefined;
  readonly result: ExecutionResult | undefined;

  constructor(status: number, error: WireError, result?: ExecutionResult, options?: ErrorOptions) {
    super(error.message, options);
    const { code, message: _message, ...detail } = error;
    this.code = code;
    this.status = status;
    this.detail = detail;
    this.result = result;
    this.executionId = result?.id;
    this.logs = result?.logs;
    this.metrics = result?.metrics;
  }
}

const DEFAULT_MAX_RETRIES = 2;
const DEFAULT_WAIT_MS = 60_000;
/** The server holds one wait request open for at most 30 s. */
const MAX_POLL_MS = 30_000;
/** A shorter poll would make `wait` a busy loop. */
const MIN_POLL_MS = 100;
const DEFAULT_MAX_RETRY_DELAY_MS = 10_000;
const RETRIED_STATUSES = new Set([429, 503]);

export class Cordon {
  readonly execute: {
    /** Runs a job and resolves with its result. */
    code: (request: ExecuteCodeRequest, options?: CallOptions) => Promise<ExecutionResult>;
    /** Starts a job and resolves at once with its id and status. */
    submit: (request: ExecuteCodeRequest, options?: CallOptions) => Promise<ExecutionProgress>;
  };
  readonly executions: {
    /** The result, or the progress of a job still running. */
    get: (id: string, options?: CallOptions) => Promise<ExecutionResult | ExecutionProgress>;
    /** Resolves with the result once the job ends; throws if it fails, like `execute.code`. */
    wait: (id: string, options?: WaitOptions) => Promise<ExecutionResult>;
    cancel: (id: string, options?: CallOptions) => Promise<ExecutionResult | ExecutionProgress>;
    /** Resolves once the execution is gone, also when a retry finds it already deleted. */
    delete: (id: string, options?: CallOptions) => Promise<void>;
    list: (query?: ListExecutionsQuery, options?: CallOptions) => Promise<ExecutionPage>;
  };
  readonly #baseUrl: string;
  readonly #apiKey: string;
  readonly #fetch: (request: Request) => Promise<Response>;
  readonly #maxRetries: number;
  readonly #maxRetryDelayMs: number;
  readonly #requestTimeoutMs: number | undefined;

  constructor(options: CordonOptions) {
    this.#baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.#apiKey = options.apiKey;
    this.#fetch = options.fetch ?? ((request) => fetch(request));
    this.#maxRetries = options.maxRetries ?? DEFAULT_MAX_RETRIES;
    this.#maxRetryDelayMs = options.maxRetryDelayMs ?? DEFAULT_MAX_RETRY_DELAY_MS;
    this.#requestTimeoutMs = options.requestTimeoutMs;
    const path = (id: string, action = "") => `/v1/executions/${idSegment(id)}${action}`;
    this.execute = {
      code: (request, { signal } = {}) =>
        this.#send<ExecutionResult>("POST", "/v1/executions", { body: { ...request, async: false }, signal }),
      submit: (request, { signal } = {}) =>
        this.#send<ExecutionProgress>("POST", "/v1/executions", { body: { ...request, async: true }, signal }),
    };
    this.executions = {
      get: async (id, { signal } = {}) => this.#send<ExecutionResult | ExecutionProgress>("GET", path(id), { signal }),
      wait: (id, { timeoutMs, pollTimeoutMs, signal } = {}) =>
        this.#wait(id, timeoutMs ?? DEFAULT_WAIT_MS, clampPoll(pollTimeoutMs ?? MAX_POLL_MS), signal),
      // Cancelling twice is harmless (a finished job keeps its result), so it is safe to retry.
      cancel: async (id, { signal } = {}) =>
        this.#send<ExecutionResult | ExecutionProgress>("POST", path(id, "/cancel"), { idempotent: true, signal }),
      delete: async (id, { signal } = {}) => {
        await this.#send<null>("DELETE", path(id), { signal });
      },
      list: (query = {}, { signal } = {}) =>
        this.#send<ExecutionPage>("GET", `/v1/executions${queryString(query)}`, { signal }),
    };
  }

  validate(request: ValidateCodeRequest, { signal }: CallOptions = {}): Promise<ValidationReport> {
    return this.#send<ValidationReport>("POST", "/v1/validate", { body: request, signal });
  }

  /** What the tenant has used of its limits: the hourly window, concurrency slots, storage. */
  usage({ signal }: CallOptions = {}): Promise<Usage> {
    return this.#send<Usage>("GET", "/v1/usage", { signal });
  }

  /** Long-polls `/wait` until the job ends or `timeoutMs` passes (then throws CLIENT_WAIT_TIMEOUT). */
  async #wait(
    id: string,
    timeoutMs: number,
    pollTimeoutMs: number,
    signal: AbortSignal | undefined,
  ): Promise<ExecutionResult> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const remaining = deadline - Date.now();
      const poll = Math.floor(Math.max(0, Math.min(pollTimeoutMs, remaining)));
      const outcome = await this.#send<ExecutionResult | ExecutionProgress>(
        "POST",
        `/v1/executions/${idSegment(id)}/wait?timeout=${poll}`,
        { idempotent: true, heldMs: poll, signal },
      );
      if (outcome.status !== "queued" && outcome.status !== "running") {
        const result = outcome as ExecutionResult;
        // The wait route answers 200 either way; a failed job throws with the status `execute.code`
        // answers it with, so the two ways of running a job fail alike.
        if (result.error) throw new CordonError(failureStatus(result.error.code), result.error, result);
        return result;
      }
      if (Date.now() >= deadline) {
        throw new CordonError(0, {
          code: "CLIENT_WAIT_TIMEOUT",
          message: `execution ${id} still running after ${timeoutMs} ms`,
        });
      }
    }
  }

  /** One call, retried as the module comment says; an abort of `signal` ends it with CLIENT_ABORTED. */
  async #send<T>(method: "GET" | "POST" | "DELETE", path: string, options: SendOptions = {}): Promise<T> {
    const { signal } = options;
    try {
      return await this.#attempts<T>(method, path, options);
    } catch (error) {
      // Whatever was under way (a fetch, its body, a backoff) rejected with the signal's reason.
      if (signal?.aborted) throw abortedError(signal);
      throw error;
    }
  }

  async #attempts<T>(
    method: "GET" | "POST" | "DELETE",
    path: string,
    { body, idempotent = method !== "POST", heldMs = 0, signal }: SendOptions,
  ): Promise<T> {
    // An earlier attempt may have reached the service even though its answer never came back.
    let answerLost = false;
    for (let attempt = 0; ; attempt++) {
      signal?.throwIfAborted();
      let answer: Answer;
      try {
        answer = await this.#exchange(method, path, body, heldMs, signal);
      } catch (error) {
        // A read can be repeated; a submitted job may already be running, so it is never resent.
        if (idempotent && attempt < this.#maxRetries && !signal?.aborted) {
          answerLost = true;
          await sleep(backoffMs(attempt), signal);
          continue;
        }
        throw error;
      }
      const { response, payload } = answer;
      if (response.ok) {
        if (response.status === 204 || isRecord(payload)) return payload as T;
        // A proxy's page, say: not an answer of Cordon's, so not something to hand over as one.
        throw new CordonError(response.status, {
          code: "CLIENT_INVALID_RESPONSE",
          message: `HTTP ${response.status} without a JSON object from ${path}`,
        });
      }
      // The lost answer was the deletion's own: what the caller asked for is done.
      if (method === "DELETE" && response.status === 404 && answerLost) return null as T;

      const delayMs = retryDelayMs(response);
      // A refusal is retried; an answer that is a job's recorded result (a 503 for a package that
      // could not be installed, say) is not: that job was accepted, and sending it again runs another.
      const recorded = isRecord(payload) && typeof payload.id === "string";
      if (
        RETRIED_STATUSES.has(response.status) &&
        !recorded &&
        attempt < this.#maxRetries &&
        delayMs <= this.#maxRetryDelayMs
      ) {
        await sleep(delayMs, signal);
        continue;
      }
      throw toError(response.status, payload);
    }
  }

  /**
   * One request and its answer's body. It ends at once when `signal` aborts, with
   * CLIENT_REQUEST_TIMEOUT when it outlives `requestTimeoutMs` (plus the time the service holds it),
   * and with CLIENT_NETWORK_ERROR when the fetch fails (the fetch's error is the cause); the fetch is
   * handed the same signal, so it can drop the connection too.
   */
  async #exchange(
    method: "GET" | "POST" | "DELETE",
    path: string,
    body: unknown,
    heldMs: number,
    signal: AbortSignal | undefined,
  ): Promise<Answer> {
    const limitMs = this.#requestTimeoutMs === undefined ? undefined : this.#requestTimeoutMs + heldMs;
    const timeout = limitMs === undefined ? undefined : AbortSignal.timeout(limitMs);
    const requestSignal = signal && timeout ? AbortSignal.any([signal, timeout]) : (signal ?? timeout);
    const request = new Request(`${this.#baseUrl}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${this.#apiKey}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      ...(requestSignal ? { signal: requestSignal } : {}),
    });
    try {
      return await untilAborted(this.#answer(request), requestSignal);
    } catch (error) {
      if (timeout?.aborted && !signal?.aborted) {
        throw new CordonError(
          0,
          { code: "CLIENT_REQUEST_TIMEOUT", message: `no answer from ${path} within ${limitMs} ms` },
          undefined,
          { cause: error },
        );
      }
      // The caller's abort is told apart by #send, from the signal itself.
      if (signal?.aborted) throw error;
      const reason = error instanceof Error ? error.message : String(error);
      throw new CordonError(
        0,
        { code: "CLIENT_NETWORK_ERROR", message: `no answer from ${path}: ${reason}` },
        undefined,
        { cause: error },
      );
    }
  }

  async #answer(request: Request): Promise<Answer> {
    const response = await this.#fetch(request);
    const payload: unknown = response.status === 204 ? null : await response.json().catch(() => null);
    return { response, payload };
  }
}

interface SendOptions {
  body?: unknown;
  /** Whether a network failure may be retried: sending the request twice does no harm. */
  idempotent?: boolean;
  /** How long the service holds the request open on purpose (a wait's poll), on top of the timeout. */
  heldMs?: number;
  signal?: AbortSignal | undefined;
}

interface Answer {
  response: Response;
  payload: unknown;
}

function toError(status: number, payload: unknown): CordonError {
  const error = isRecord(payload) && isRecord(payload.error) ? payload.error : null;
  const body: WireError = {
    ...(error ?? {}),
    code: typeof error?.code === "string" ? error.code : "INTERNAL_ERROR",
    message: typeof error?.message === "string" ? error.message : `HTTP ${status}`,
  };
  // A job that ran and failed comes back as its whole result, with `error` inside.
  const result =
    isRecord(payload) && typeof payload.id === "string" ? (payload as unknown as ExecutionResult) : undefined;
  return new CordonError(status, body, result);
}

/**
 * An id as one path segment. URLs resolve "." and ".." (also spelled %2E) as paths, so they cannot be
 * sent; no execution has such an id, and the answer is the server's for an unknown one.
 */
function idSegment(id: string): string {
  if (id === "." || id === "..")
    throw new CordonError(404, { code: "NOT_FOUND", message: `no execution has the id ${id}` });
  return encodeURIComponent(id);
}

/** The status the service answers a failed job with; 0 for a code this client does not know. */
function failureStatus(code: string): number {
  return isErrorCode(code) ? ERROR_STATUS[code] : 0;
}

function abortedError(signal: AbortSignal): CordonError {
  return new CordonError(0, { code: "CLIENT_ABORTED", message: "the call was aborted" }, undefined, {
    cause: signal.reason,
  });
}

function clampPoll(ms: number): number {
  return Number.isFinite(ms) ? Math.min(MAX_POLL_MS, Math.max(MIN_POLL_MS, ms)) : MAX_POLL_MS;
}

/** Retry-After in ms; 1 s when the answer has none or an unreadable one (never at once: `Number(null)` is 0). */
function retryDelayMs(response: Response): number {
  const header = response.headers.get("retry-after")?.trim() ?? "";
  const seconds = /^\d+$/.test(header) ? Number(header) : NaN;
  return Number.isFinite(seconds) ? seconds * 1000 : 1000;
}

function backoffMs(attempt: number): number {
  return 200 * 2 ** attempt;
}

function queryString(query: ListExecutionsQuery): string {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined) params.set(name, String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

/** Resolves after `ms`, or rejects with the signal's reason as soon as it aborts; neither leaves a timer or listener. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const stop = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", stop);
      resolve();
    }, ms);
    signal?.addEventListener("abort", stop, { once: true });
  });
}

/**
 * Settles like `work`, or rejects with the signal's reason as soon as it aborts, whether or not `work`
 * (a fetch that ignores its request's signal, say) stops too. The listener goes when either happens.
 */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  return new Promise((resolve, reject) => {
    const stop = () => reject(signal.reason);
    if (signal.aborted) stop();
    else signal.addEventListener("abort", stop, { once: true });
    void work.then(resolve, reject).finally(() => signal.removeEventListener("abort", stop));
  });
}
