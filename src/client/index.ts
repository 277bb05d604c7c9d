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
 * Retries: 429 and 503 answers are retried after `Retry-After` (at most `maxRetries` times, never
 * waiting longer than `maxRetryDelayMs`): both mean the job did not run. A network failure is retried
 * only for reads; a submitted job may have run, so it is never sent twice.
 */
import type { z } from "zod";
import type { ErrorBody } from "../errors";
import type { ExecutionRequest, ExecutionResult, ListQuery, ValidateRequest } from "../schemas";
import type { ValidationReport } from "../service/executions";
import type { ExecutionPage } from "../store/executions";

export type ExecuteCodeRequest = z.input<typeof ExecutionRequest>;
export type ListExecutionsQuery = z.input<typeof ListQuery>;
export type ValidateCodeRequest = z.input<typeof ValidateRequest>;
export type { ExecutionResult, ExecutionPage, ValidationReport };

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

  constructor(status: number, error: ErrorBody, result?: ExecutionResult) {
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
const DEFAULT_MAX_RETRY_DELAY_MS = 10_000;
const RETRIED_STATUSES = new Set([429, 503]);

export class Cordon {
  readonly execute: { code: (request: ExecuteCodeRequest) => Promise<ExecutionResult> };
  readonly executions: {
    get: (id: string) => Promise<ExecutionResult>;
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
    this.execute = { code: (request) => this.#send<ExecutionResult>("POST", "/v1/executions", request) };
    this.executions = {
      get: (id) => this.#send<ExecutionResult>("GET", `/v1/executions/${encodeURIComponent(id)}`),
      list: (query = {}) => this.#send<ExecutionPage>("GET", `/v1/executions${queryString(query)}`),
    };
  }

  validate(request: ValidateCodeRequest): Promise<ValidationReport> {
    return this.#send<ValidationReport>("POST", "/v1/validate", request);
  }

  async #send<T>(method: "GET" | "POST", path: string, body?: unknown): Promise<T> {
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
        if (method === "GET" && attempt < this.#maxRetries) {
          await sleep(backoffMs(attempt));
          continue;
        }
        throw error;
      }
      const payload: unknown = await response.json().catch(() => null);
      if (response.ok) return payload as T;

      const delayMs = retryDelayMs(response);
      if (RETRIED_STATUSES.has(response.status) && attempt < this.#maxRetries && delayMs <= this.#maxRetryDelayMs) {
        await sleep(delayMs);
        continue;
      }
      throw toError(response.status, payload);
    }
  }
}

function toError(status: number, payload: unknown): CordonError {
  const error = isRecord(payload) && isRecord(payload.error) ? payload.error : null;
  const body: ErrorBody = {
    ...(error ?? {}),
    code: typeof error?.code === "string" ? (error.code as ErrorBody["code"]) : "INTERNAL_ERROR",
    message: typeof error?.message === "string" ? error.message : `HTTP ${status}`,
  };
  // A job that ran and failed comes back as its whole result, with `error` inside.
  const result =
    isRecord(payload) && typeof payload.id === "string" ? (payload as unknown as ExecutionResult) : undefined;
  return new CordonError(status, body, result);
}

function retryDelayMs(response: Response): number {
  const seconds = Number(response.headers.get("retry-after"));
  return Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : 1000;
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
