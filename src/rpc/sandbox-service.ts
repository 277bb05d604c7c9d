/**
 * `SandboxService`: the execution API for other Workers over a service binding (Workers RPC).
 *
 * A calling Worker identifies its tenant with an API key passed as the first argument of every
 * method (keep it in a secret of the calling Worker). Each call is authenticated, rate limited and
 * checked exactly like the same call over HTTPS. Results and refusals come back as data,
 * `{ ok: true, value }` or `{ ok: false, error: { code, message, … } }`; nothing is thrown across the
 * boundary. Helpers are `#private`, so only the methods below are reachable over RPC.
 */
import { WorkerEntrypoint } from "cloudflare:workers";
import type { z } from "zod";
import { CordonError, ErrorCode, type ErrorBody } from "../errors";
import { MAX_JSON_DEPTH, valueShapeProblem } from "../json-depth";
import { parseJsonText } from "../middleware/json-body";
import { holdsSharedObject, nestsTooDeep, validationError } from "../middleware/query";
import {
  ExecutionRequest,
  ListQuery,
  MAX_BODY_BYTES,
  ValidateRequest,
  WaitQuery,
  type ExecutionProgress,
  type ExecutionResult,
  type Usage,
} from "../schemas";
import type { RateInfo } from "../service/admission";
import {
  cancelExecution,
  deleteExecution,
  execute,
  getExecution,
  listOwnExecutions,
  submit,
  validateCode,
  waitForExecution,
  type ServiceContext,
  type ValidationReport,
} from "../service/executions";
import { tenantUsage } from "../service/usage";
import type { ExecutionPage } from "../store/executions";
import { authenticate } from "../tenants/authenticate";

export type RpcReply<T> = { ok: true; value: T; rate?: RateInfo } | { ok: false; error: ErrorBody; rate?: RateInfo };

/**
 * The contract calling Workers program against (`Service<SandboxService>` maps JSON-typed results
 * too deeply for TypeScript; this plain interface is what the class implements).
 */
export interface SandboxServiceApi {
  execute(apiKey: string, request: z.input<typeof ExecutionRequest>): Promise<RpcReply<ExecutionResult>>;
  submit(apiKey: string, request: z.input<typeof ExecutionRequest>): Promise<RpcReply<ExecutionProgress>>;
  get(apiKey: string, executionId: string): Promise<RpcReply<ExecutionResult | ExecutionProgress>>;
  wait(apiKey: string, executionId: string, timeoutMs?: number): Promise<RpcReply<ExecutionResult | ExecutionProgress>>;
  cancel(apiKey: string, executionId: string): Promise<RpcReply<ExecutionResult | ExecutionProgress>>;
  delete(apiKey: string, executionId: string): Promise<RpcReply<null>>;
  list(apiKey: string, query?: z.input<typeof ListQuery>): Promise<RpcReply<ExecutionPage>>;
  validate(apiKey: string, request: z.input<typeof ValidateRequest>): Promise<RpcReply<ValidationReport>>;
  usage(apiKey: string): Promise<RpcReply<Usage>>;
}

export class SandboxService extends WorkerEntrypoint<Env> implements SandboxServiceApi {
  /** Runs a job and waits for its result (a job that ran and failed is `ok: true` with `value.error`). */
  async execute(apiKey: string, request: z.input<typeof ExecutionRequest>): Promise<RpcReply<ExecutionResult>> {
    return this.#call(apiKey, async (context) => {
      const { result, rate } = await execute(context, parse(ExecutionRequest, request));
      return { ok: true, value: result, rate };
    });
  }

  /** Starts a job and answers at once with its id; read it back with get, wait or cancel. */
  async submit(apiKey: string, request: z.input<typeof ExecutionRequest>): Promise<RpcReply<ExecutionProgress>> {
    return this.#call(apiKey, async (context) => {
      const { progress, rate } = await submit(context, parse(ExecutionRequest, request));
      return { ok: true, value: progress, rate };
    });
  }

  async get(apiKey: string, executionId: string): Promise<RpcReply<ExecutionResult | ExecutionProgress>> {
    return this.#call(apiKey, async (context) => ({
      ok: true,
      value: await getExecution(context, String(executionId)),
    }));
  }

  /** The result once the job has finished, or its progress after `timeoutMs` (default 10 s, at most 30 s). */
  async wait(
    apiKey: string,
    executionId: string,
    timeoutMs?: number,
  ): Promise<RpcReply<ExecutionResult | ExecutionProgress>> {
    return this.#call(apiKey, async (context) => {
      const { timeout } = parse(WaitQuery, timeoutMs === undefined ? {} : { timeout: timeoutMs });
      return { ok: true, value: await waitForExecution(context, String(executionId), timeout) };
    });
  }

  async cancel(apiKey: string, executionId: string): Promise<RpcReply<ExecutionResult | ExecutionProgress>> {
    return this.#call(apiKey, async (context) => ({
      ok: true,
      value: await cancelExecution(context, String(executionId)),
    }));
  }

  async delete(apiKey: string, executionId: string): Promise<RpcReply<null>> {
    return this.#call(apiKey, async (context) => {
      await deleteExecution(context, String(executionId));
      return { ok: true, value: null };
    });
  }

  async list(apiKey: string, query: z.input<typeof ListQuery> = {}): Promise<RpcReply<ExecutionPage>> {
    return this.#call(apiKey, async (context) => ({
      ok: true,
      value: await listOwnExecutions(context, parse(ListQuery, query)),
    }));
  }

  async validate(apiKey: string, request: z.input<typeof ValidateRequest>): Promise<RpcReply<ValidationReport>> {
    return this.#call(apiKey, async (context) => ({
      ok: true,
      value: (await validateCode(context, parse(ValidateRequest, request))).report,
    }));
  }

  /** What the caller's tenant has used of its limits. */
  async usage(apiKey: string): Promise<RpcReply<Usage>> {
    return this.#call(apiKey, async (context) => ({ ok: true, value: await tenantUsage(context.env, context.caller) }));
  }

  async #call<T>(apiKey: unknown, work: (context: ServiceContext) => Promise<RpcReply<T>>): Promise<RpcReply<T>> {
    try {
      const outcome = await authenticate(this.env.DB, typeof apiKey === "string" ? apiKey : null);
      if (!outcome.ok) {
        console.log(JSON.stringify({ event: "auth_refused", via: "rpc", reason: outcome.reason }));
        throw new CordonError(ErrorCode.UNAUTHORIZED, "a valid API key is required as the first argument");
      }
      return await work({
        env: this.env,
        caller: outcome.caller,
        exports: this.ctx.exports,
        waitUntil: (promise) => this.ctx.waitUntil(promise),
      });
    } catch (error) {
      if (error instanceof CordonError) {
        return { ok: false, error: error.toBody(), ...(error.rate ? { rate: error.rate } : {}) };
      }
      console.error(JSON.stringify({ event: "unhandled_error", via: "rpc", message: String(error) }));
      return { ok: false, error: new CordonError(ErrorCode.INTERNAL_ERROR, "internal error").toBody() };
    }
  }
}

/**
 * RPC arguments read as the JSON body they stand for: a structured clone can carry what JSON cannot
 * (cycles, shared objects, holes, `undefined`, any size up to the runtime's 32 MiB), and zod builds
 * an issue per element it rejects (a sparse array of 10^5 holes, a few bytes to send, exhausted the
 * dispatcher's heap). So the arguments are checked for shape, written as JSON text, held to the HTTPS
 * body's limit, and parsed back like a body.
 */
function parse<S extends z.ZodType>(schema: S, value: unknown): z.infer<S> {
  const problem = valueShapeProblem(value, MAX_JSON_DEPTH, MAX_BODY_BYTES);
  if (problem === "too_deep") throw nestsTooDeep("the arguments");
  if (problem === "shared") throw holdsSharedObject("the arguments");
  if (problem === "too_large") throw argumentsTooLarge();
  let text: string;
  try {
    text = JSON.stringify(value ?? {});
  } catch (error) {
    throw new CordonError(ErrorCode.VALIDATION_ERROR, `the arguments are not JSON: ${String(error)}`);
  }
  if (text.length > MAX_BODY_BYTES || new TextEncoder().encode(text).byteLength > MAX_BODY_BYTES) {
    throw argumentsTooLarge();
  }
  const parsed = schema.safeParse(parseJsonText(text, "the arguments"));
  if (!parsed.success) throw validationError("the arguments do not match the schema", parsed.error);
  return parsed.data;
}

function argumentsTooLarge(): CordonError {
  return new CordonError(ErrorCode.PAYLOAD_TOO_LARGE, `the arguments are larger than ${MAX_BODY_BYTES} bytes of JSON`, {
    maxBytes: MAX_BODY_BYTES,
  });
}
