/**
 * The one error vocabulary of Cordon. Every failure, whether an HTTP request was refused or a job
 * failed, is exactly one of these codes. `ERROR_STATUS` is typed `Record<ErrorCode, …>` so adding a
 * code without choosing its HTTP status fails the typecheck.
 */

/** A tenant's rate-limit state, carried by admissions and by RATE_LIMITED refusals (as headers). */
export interface RateInfo {
  limit: number;
  remaining: number;
  resetSeconds: number;
  retryAfterSeconds?: number;
}

export const ErrorCode = {
  /** Body is not JSON, or the JSON content type is missing. */
  INVALID_JSON: "INVALID_JSON",
  UNSUPPORTED_MEDIA_TYPE: "UNSUPPORTED_MEDIA_TYPE",
  /** The request is well-formed JSON but breaks the schema, or the code does not parse. */
  VALIDATION_ERROR: "VALIDATION_ERROR",
  PAYLOAD_TOO_LARGE: "PAYLOAD_TOO_LARGE",
  NOT_FOUND: "NOT_FOUND",
  METHOD_NOT_ALLOWED: "METHOD_NOT_ALLOWED",
  /** No API key, a malformed one, or one that is unknown or revoked. */
  UNAUTHORIZED: "UNAUTHORIZED",
  /** The request asks for a trust level above its tenant's ceiling. */
  TRUST_LEVEL_EXCEEDED: "TRUST_LEVEL_EXCEEDED",
  /** The trust level does not allow the requested runtime. */
  RUNTIME_NOT_ALLOWED: "RUNTIME_NOT_ALLOWED",
  /** Over the tenant's (or key's) execution rate, or its cap on concurrently running executions. */
  RATE_LIMITED: "RATE_LIMITED",
  /** The job ran past its wall-clock timeout or its CPU budget. */
  SANDBOX_TIMEOUT: "SANDBOX_TIMEOUT",
  /** The job's isolate ran out of memory (the runner holding it was killed). */
  SANDBOX_MEMORY_LIMIT: "SANDBOX_MEMORY_LIMIT",
  /** The job tried to reach the network where its cordon or its network policy does not allow it (a host, a budget, a socket). */
  SANDBOX_NETWORK_BLOCKED: "SANDBOX_NETWORK_BLOCKED",
  /** The job's code uses a construct or module its cordon refuses. */
  SANDBOX_SECURITY_VIOLATION: "SANDBOX_SECURITY_VIOLATION",
  /** The job threw, or its default export has the wrong shape. */
  SANDBOX_RUNTIME_ERROR: "SANDBOX_RUNTIME_ERROR",
  /** The job's return value (or response body) is larger than its output limit. */
  SANDBOX_OUTPUT_TOO_LARGE: "SANDBOX_OUTPUT_TOO_LARGE",
  /** The job was cancelled by its caller before it finished. */
  SANDBOX_CANCELLED: "SANDBOX_CANCELLED",
  /** The execution has not finished yet (e.g. DELETE of a running job). */
  EXECUTION_NOT_FINISHED: "EXECUTION_NOT_FINISHED",
  /** The runner holding the job died for a reason that is not the job's memory or time. */
  SANDBOX_RUNNER_CRASHED: "SANDBOX_RUNNER_CRASHED",
  /** No runner could take the job (the local sandbox host is down or unreachable). */
  SANDBOX_UNAVAILABLE: "SANDBOX_UNAVAILABLE",
  INTERNAL_ERROR: "INTERNAL_ERROR",
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export const ERROR_STATUS = {
  INVALID_JSON: 400,
  UNSUPPORTED_MEDIA_TYPE: 415,
  VALIDATION_ERROR: 422,
  PAYLOAD_TOO_LARGE: 413,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  UNAUTHORIZED: 401,
  TRUST_LEVEL_EXCEEDED: 403,
  RUNTIME_NOT_ALLOWED: 403,
  RATE_LIMITED: 429,
  SANDBOX_TIMEOUT: 408,
  SANDBOX_MEMORY_LIMIT: 422,
  SANDBOX_NETWORK_BLOCKED: 403,
  SANDBOX_SECURITY_VIOLATION: 403,
  SANDBOX_RUNTIME_ERROR: 422,
  SANDBOX_OUTPUT_TOO_LARGE: 422,
  SANDBOX_CANCELLED: 409,
  EXECUTION_NOT_FINISHED: 409,
  SANDBOX_RUNNER_CRASHED: 502,
  SANDBOX_UNAVAILABLE: 503,
  INTERNAL_ERROR: 500,
} as const satisfies Record<ErrorCode, number>;

export type ErrorStatus = (typeof ERROR_STATUS)[ErrorCode];

/** The error part of every envelope and of every failed job's result. */
export interface ErrorBody {
  code: ErrorCode;
  message: string;
  [detail: string]: unknown;
}

/**
 * Thrown inside the dispatcher for a request that must be refused; each way in turns it into its wire
 * form (HTTP: `onError` writes the envelope; RPC: `{ ok: false, error }`).
 */
export class CordonError extends Error {
  override readonly name = "CordonError";
  readonly code: ErrorCode;
  readonly detail: Record<string, unknown>;
  /** Rate-limit state to report with the refusal (HTTP: the RateLimit-* and Retry-After headers). */
  readonly rate: RateInfo | undefined;

  constructor(code: ErrorCode, message: string, detail: Record<string, unknown> = {}, rate?: RateInfo) {
    super(message);
    this.code = code;
    this.detail = detail;
    this.rate = rate;
  }

  get status(): ErrorStatus {
    return ERROR_STATUS[this.code];
  }

  /** The same refusal, reporting the tenant's rate state too (a refusal that was counted). */
  withRate(rate: RateInfo): CordonError {
    return new CordonError(this.code, this.message, this.detail, rate);
  }

  toBody(): ErrorBody {
    return { ...this.detail, code: this.code, message: this.message };
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === "string" && Object.hasOwn(ErrorCode, value);
}
