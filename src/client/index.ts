/**
 * Cordon's TypeScript client: fetch only, so it works in Node 20+, browsers and Workers.
 *
 *   import { Cordon, CordonError } from "cordon/client";
 *   const cordon = new Cordon({ baseUrl: "https://cordon.example.com", apiKey: process.env.CORDON_KEY! });
 *   const result = await cordon.execute.code({ runtime: "edge", code, input });
 *
 * Types come from the same zod schemas the service validates with (type-only imports: the client
 * bundles no zod). A refused request or a failed job throws `CordonError` with the code; a job's
 * result (`success: true`, including test cases that did not pass) resolves.
 *
 * Retries: 429 and 503 refusals are retried after `Retry-After` (at most `maxRetries` times, never
 * waiting longer than `maxRetryDelayMs`): the job did not run. A 503 that carries a job's recorded
 * result (its `id`) is not: that job was accepted. A network failure is retried
 * only for idempotent calls (reads, wait, cancel, delete); a submitted job may have run, so it is
 * never sent twice.
 */
import type { z } from "zod";
/**
 * An error as the service sends it (`ErrorBody` of src/errors.ts), or one the client raises itself
 * (`CLIENT_WAIT_TIMEOUT`, `CLIENT_INVALID_RESPONSE`).
 */
interface WireError {
  code: string;
  message: string;
  [detail: string]: unknown;
}
import type { ExecutionProgress, ExecutionRequest, ExecutionResult, ListQuery, ValidateRequest } from "../schemas";
import type { ValidationReport } from "../service/executions";
import type { ExecutionPage } from "../store/executions";

export type ExecuteCodeRequest = z.input<typeof ExecutionRequest>;
export type ListExecutionsQuery = z.input<typeof ListQuery>;
export type ValidateCodeRequest = z.input<typeof ValidateRequest>;
export type { ExecutionResult, ExecutionPage, ExecutionProgress, ValidationReport };

export interface CordonOptions {
  baseUrl: string;
  apiKey: string;
  /** Defaults to the global fetch; pass a service binding's fetch or a test double's here. */
  fetch?: (request: Request) => Promise<Response>;
  /** Retries of 429/503 answers (default 2). */
  maxRetries?: number;
  /** The longest `Retry-After` the client will wait (default 10 000 ms); longer ones throw at once. */
  maxRetryDelayMs?: number;
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

  constructor(status: number, error: WireError, result?: ExecutionResult) {
    super(error.message);
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
    code: (request: ExecuteCodeRequest) => Promise<ExecutionResult>;
    /** Starts a job and resolves at once with its id and status. */
    submit: (request: ExecuteCodeRequest) => Promise<ExecutionProgress>;
  };
  readonly executions: {
    /** The result, or the progress of a job still running. */
    get: (id: string) => Promise<ExecutionResult | ExecutionProgress>;
    /** Resolves with the result once the job ends; throws if it fails, like `execute.code`. */
    wait: (id: string, options?: { timeoutMs?: number; pollTimeoutMs?: number }) => Promise<ExecutionResult>;
    cancel: (id: string) => Promise<ExecutionResult | ExecutionProgress>;
    delete: (id: string) => Promise<void>;
    list: (query?: ListExecutionsQuery) => Promise<ExecutionPage>;
  };
  readonly #baseUrl: string;
  readonly #apiKey: string;
  readonly #fetch: (request: Request) => Promise<Response>;
  readonly #maxRetries: number;
  readonly #maxRetryDelayMs: number;

  constructor(options: CordonOptions) {
    this.#baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.#apiKey = options.apiKey;
    this.#fetch = options.fetch ?? ((request) => fetch(request));
    this.#maxRetries = options.maxRetries ?? DEFAULT_MAX_RETRIES;
    this.#maxRetryDelayMs = options.maxRetryDelayMs ?? DEFAULT_MAX_RETRY_DELAY_MS;
    const path = (id: string, action = "") => `/v1/executions/${idSegment(id)}${action}`;
    this.execute = {
      code: (request) => this.#send<ExecutionResult>("POST", "/v1/executions", { ...request, async: false }),
      submit: (request) => this.#send<ExecutionProgress>("POST", "/v1/executions", { ...request, async: true }),
    };
    this.executions = {
      get: async (id) => this.#send<ExecutionResult | ExecutionProgress>("GET", path(id)),
      wait: (id, options = {}) =>
        this.#wait(id, options.timeoutMs ?? DEFAULT_WAIT_MS, clampPoll(options.pollTimeoutMs ?? MAX_POLL_MS)),
      // Cancelling twice is harmless (a finished job keeps its result), so it is safe to retry.
      cancel: async (id) =>
        this.#send<ExecutionResult | ExecutionProgress>("POST", path(id, "/cancel"), undefined, true),
      delete: async (id) => {
        await this.#send<null>("DELETE", path(id), undefined, true);
      },
      list: (query = {}) => this.#send<ExecutionPage>("GET", `/v1/executions${queryString(query)}`),
    };
  }

  validate(request: ValidateCodeRequest): Promise<ValidationReport> {
    return this.#send<ValidationReport>("POST", "/v1/validate", request);
  }

  /** Long-polls `/wait` until the job ends or `timeoutMs` passes (then throws CLIENT_WAIT_TIMEOUT). */
  async #wait(id: string, timeoutMs: number, pollTimeoutMs: number): Promise<ExecutionResult> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const remaining = deadline - Date.now();
      const poll = Math.floor(Math.max(0, Math.min(pollTimeoutMs, remaining)));
      const outcome = await this.#send<ExecutionResult | ExecutionProgress>(
        "POST",
        `/v1/executions/${idSegment(id)}/wait?timeout=${poll}`,
        undefined,
        true,
      );
      if (outcome.status !== "queued" && outcome.status !== "running") {
        const result = outcome as ExecutionResult;
        if (result.error) throw new CordonError(0, result.error, result);
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

  async #send<T>(
    method: "GET" | "POST" | "DELETE",
    path: string,
    body?: unknown,
    idempotent = method !== "POST",
  ): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      let response: Response;
      try {
        response = await this.#fetch(
          new Request(`${this.#baseUrl}${path}`, {
            method,
            headers: {
              authorization: `Bearer ${this.#apiKey}`,
              ...(body === undefined ? {} : { "content-type": "application/json" }),
            },
            ...(body === undefined ? {} : { body: JSON.stringify(body) }),
          }),
        );
      } catch (error) {
        // A read can be repeated; a submitted job may already be running, so it is never resent.
        if (idempotent && attempt < this.#maxRetries) {
          await sleep(backoffMs(attempt));
          continue;
        }
        throw error;
      }
      const payload: unknown = response.status === 204 ? null : await response.json().catch(() => null);
      if (response.ok) {
        if (response.status === 204 || isRecord(payload)) return payload as T;
        // A proxy's page, say: not an answer of Cordon's, so not something to hand over as one.
        throw new CordonError(response.status, {
          code: "CLIENT_INVALID_RESPONSE",
          message: `HTTP ${response.status} without a JSON object from ${path}`,
        });
      }

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
        await sleep(delayMs);
        continue;
      }
      throw toError(response.status, payload);
    }
  }
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

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
