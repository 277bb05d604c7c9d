/**
 * The request and result schemas of the public API: the one source for validation and types.
 */
import { z } from "zod";
import { ErrorCode } from "./errors";
import { LogEntry } from "./edge/protocol";
import { NetworkPolicy } from "./egress/policy";
import { NodeRunRequest } from "./node/protocol";
import { TRUST_LEVELS } from "./policy/trust";

/** Largest accepted request body; larger bodies get 413 PAYLOAD_TOO_LARGE before parsing. */
export const MAX_BODY_BYTES = 1024 * 1024;
export const MAX_CODE_CHARS = 256 * 1024;
export const MAX_TEST_CASES = 50;
export const MAX_METADATA_KEYS = 16;
export const MAX_METADATA_BYTES = 2 * 1024;

export const TrustLevel = z.enum(TRUST_LEVELS);

/** Caller-supplied labels stored with the execution record (bounded: 16 keys, 2 KiB as JSON). */
export const Metadata = z
  .record(z.string().min(1).max(64), z.union([z.string().max(256), z.number(), z.boolean()]))
  .refine((value) => Object.keys(value).length <= MAX_METADATA_KEYS, `at most ${MAX_METADATA_KEYS} keys`)
  .refine((value) => JSON.stringify(value).length <= MAX_METADATA_BYTES, `at most ${MAX_METADATA_BYTES} bytes as JSON`);

const positiveMs = z.number().int().positive();

/** Any JSON value; one instance, so the OpenAPI document names it once (`JsonValue`). */
export const JsonValue = z.json();

export const JobRequestSpec = z
  .object({
    method: z
      .string()
      .regex(/^[A-Z]{3,7}$/, "an upper-case HTTP method")
      .default("POST"),
    path: z.string().startsWith("/").max(2048).default("/"),
    headers: z.record(z.string(), z.string()).default({}),
    body: z.string().nullable().optional(),
  })
  .strict();
export type JobRequestSpec = z.infer<typeof JobRequestSpec>;

export const Runtime = z.enum(["edge", "node"]);

/** Limits that only node jobs have (a process has files and subprocesses; an isolate does not). */
const NODE_ONLY_LIMITS = ["filesystem", "maxSubprocesses", "maxFileDescriptors"] as const;

export const ExecutionRequest = z
  .object({
    runtime: Runtime,
    code: z.string().min(1).max(MAX_CODE_CHARS),
    input: JsonValue.optional(),
    /** For a Worker `{ fetch }` export: the request it receives (see README "Code forms"). */
    request: JobRequestSpec.optional(),
    captureConsole: z.boolean().default(true),
    /** Node jobs: npm packages, exact versions (`name@1.2.3`), installed outside the sandbox without scripts. */
    packages: NodeRunRequest.shape.packages,
    /** At most the tenant's ceiling; defaults to it. */
    trustLevel: TrustLevel.optional(),
    /** Answer at once with 202 and the execution id; read the result with GET, wait or cancel it. */
    async: z.boolean().default(false),
    metadata: Metadata.optional(),
    timeout: positiveMs.optional(),
    memory: z.number().int().positive().optional(),
    limits: z
      .object({
        cpuTime: positiveMs.optional(),
        timeout: positiveMs.optional(),
        memory: z.number().int().positive().optional(),
        logBytes: z.number().int().positive().optional(),
        outputBytes: z.number().int().positive().optional(),
        /** Calls to the job's DB and KV bindings together (edge jobs). */
        bindingCalls: z.number().int().min(0).optional(),
        /** Network egress, off by default; the same policy for edge and node jobs (see README "Network"). */
        network: NetworkPolicy.optional(),
        /** Node jobs: files. `writable` paths get a private, size-bounded tmpfs; all else is read-only. */
        filesystem: z
          .object({
            writable: NodeRunRequest.shape.limits.unwrap().shape.writable.optional(),
            maxFileSize: z.number().int().positive().optional(),
            maxFiles: z.number().int().min(0).optional(),
          })
          .strict()
          .optional(),
        /** Node jobs: processes besides the job's own. */
        maxSubprocesses: z.number().int().min(0).optional(),
        /** Node jobs: open file descriptors. */
        maxFileDescriptors: z.number().int().positive().optional(),
      })
      .strict()
      .optional(),
    test: z
      .object({
        cases: z
          .array(z.object({ input: JsonValue, expected: JsonValue }).strict())
          .min(1)
          .max(MAX_TEST_CASES),
      })
      .strict()
      .optional(),
  })
  .strict()
  .superRefine((job, context) => {
    if (job.runtime === "edge") {
      if (job.packages !== undefined) {
        context.addIssue({ code: "custom", path: ["packages"], message: "only node jobs install packages" });
      }
      for (const name of NODE_ONLY_LIMITS) {
        if (job.limits?.[name] !== undefined) {
          context.addIssue({ code: "custom", path: ["limits", name], message: "only node jobs have this limit" });
        }
      }
    } else {
      if (job.request !== undefined) {
        context.addIssue({
          code: "custom",
          path: ["request"],
          message: "node jobs export a function; `request` is for edge Worker jobs",
        });
      }
    }
  });
export type ExecutionRequest = z.infer<typeof ExecutionRequest>;

/** Final states of a job; a stored result always has one of these. */
export const ExecutionStatus = z.enum(["succeeded", "failed", "timed_out", "cancelled"]);
export type ExecutionStatus = z.infer<typeof ExecutionStatus>;

export const Metrics = z.object({
  /** Wall time in the dispatcher from accepting the job to having its result, ms. */
  duration: z.number(),
  /** Time the harness spent inside the isolate, ms (see README: an estimate in production). */
  runTime: z.number().nullable(),
  /** CPU time, ms: measured by the kernel for node jobs; null for edge jobs (not exposed to us). */
  cpuTime: z.number().nullable(),
  /** Peak memory, MB: node jobs (their cgroup); null for edge jobs. */
  memory: z.number().nullable(),
  /** Files the job wrote (node jobs). */
  filesWritten: z.number(),
  /** True when the job got a newly created isolate (always, today: every job gets a fresh one). */
  coldStart: z.boolean(),
  logBytes: z.number(),
  logsDropped: z.number(),
  outputBytes: z.number(),
  /** Guard checkpoints passed (loop iterations + function calls); a measure of work done. */
  checkpoints: z.number(),
  bindingCalls: z.object({ db: z.number(), kv: z.number() }),
  /** DB.query calls, and how many of them were refused by the SQL policy or the quota. */
  dbQueries: z.number(),
  dbRejected: z.number(),
  /** KV get/list and put/delete calls. */
  kvReads: z.number(),
  kvWrites: z.number(),
  /** Network refusals (attempts without network, and requests the gateway refused). */
  networkBlocked: z.number(),
  /** Network requests the job's gateway sent (redirect hops included). */
  networkRequests: z.number(),
  /** Body bytes of those requests and their responses together. */
  networkBytes: z.number(),
});
export type Metrics = z.infer<typeof Metrics>;

export const TestCaseResult = z.object({
  index: z.number(),
  passed: z.boolean(),
  input: JsonValue,
  expected: JsonValue,
  actual: JsonValue.optional(),
  error: z.object({ name: z.string(), message: z.string() }).optional(),
});

export const ExecutionError = z.looseObject({
  code: z.enum(Object.values(ErrorCode) as [ErrorCode, ...ErrorCode[]]),
  message: z.string(),
});

export const ExecutionResult = z.object({
  id: z.string(),
  status: ExecutionStatus,
  success: z.boolean(),
  runtime: Runtime,
  output: JsonValue,
  logs: z.array(LogEntry),
  logsTruncated: z.boolean(),
  metrics: Metrics,
  tenantId: z.string(),
  trustLevel: TrustLevel,
  /** The effective limits, by name (edge and node jobs have different sets; see the README). */
  limits: z.record(z.string(), z.number()),
  /** Node jobs: what the process wrote to stdout and stderr, bounded. */
  stdout: z.string().optional(),
  stderr: z.string().optional(),
  codeSha256: z.string(),
  metadata: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])),
  tests: z.object({ cases: z.array(TestCaseResult), allTestsPassed: z.boolean() }).optional(),
  error: ExecutionError.optional(),
  createdAt: z.string(),
  finishedAt: z.string(),
});
export type ExecutionResult = z.infer<typeof ExecutionResult>;

export const MAX_PAGE_SIZE = 100;

/**
 * A whole number in [min, max]: a number (RPC, the client) or a query string's decimal digits. Not
 * `z.coerce`, which reads `1e3`, `0x10`, ` 7` and `7.0` as numbers too.
 */
function wholeNumber(min: number, max: number) {
  const bounded = z.number().int().min(min).max(max);
  const digits = z
    .string()
    .regex(/^[0-9]{1,9}$/)
    .transform(Number)
    .pipe(bounded);
  return z.union([bounded, digits], { error: `a whole number from ${min} to ${max}, in decimal digits` });
}

export const ListQuery = z
  .object({
    status: ExecutionStatus.optional(),
    runtime: Runtime.optional(),
    limit: wholeNumber(1, MAX_PAGE_SIZE).default(20),
    /** `nextCursor` of the previous page. */
    cursor: z.string().min(1).max(512).optional(),
  })
  .strict();
export type ListQuery = z.infer<typeof ListQuery>;

export const ValidateRequest = z
  .object({
    runtime: Runtime.default("edge"),
    code: z.string().min(1).max(MAX_CODE_CHARS),
    trustLevel: TrustLevel.optional(),
  })
  .strict();
export type ValidateRequest = z.infer<typeof ValidateRequest>;

/** A listed execution: the result without its output, logs and test cases. */
export const ExecutionSummary = ExecutionResult.omit({ output: true, logs: true, tests: true });

export const ExecutionPage = z.object({
  executions: z.array(ExecutionSummary),
  nextCursor: z.string().nullable(),
});

export const ValidationProblem = z.looseObject({
  rule: z.string(),
  message: z.string(),
  line: z.number().optional(),
  column: z.number().optional(),
});

export const ValidationReport = z.object({
  valid: z.boolean(),
  trustLevel: TrustLevel,
  exportKind: z.enum(["function", "fetch-handler", "unknown"]).optional(),
  problems: z.array(ValidationProblem),
});

export const ErrorEnvelope = z.object({ error: ExecutionError });

/** A tenant's storage against its limit: its tables' growth of the jobs' database, and its KV entries. */
export const StorageReport = z.object({
  limitBytes: z.number(),
  usedBytes: z.number(),
  dbBytes: z.number(),
  kvBytes: z.number(),
});
export type StorageReport = z.infer<typeof StorageReport>;

/** What a tenant has used of its limits (`GET /v1/usage`). */
export const Usage = z.object({
  tenantId: z.string(),
  maxTrustLevel: TrustLevel,
  /** The tenant's sliding hourly window of requests that run or check code; the key's own when that one is full. */
  requests: z.object({
    limit: z.number(),
    remaining: z.number(),
    /** Seconds until the oldest request in the window stops counting. */
    resetSeconds: z.number(),
    /** Which window is full, when one is. */
    exhausted: z.enum(["tenant_rate", "key_rate"]).nullable(),
  }),
  concurrency: z.object({ limit: z.number(), running: z.number() }),
  storage: StorageReport,
});
export type Usage = z.infer<typeof Usage>;

export const Tenant = z.object({
  id: z.string(),
  name: z.string(),
  maxTrustLevel: TrustLevel,
  rateLimitPerHour: z.number(),
  maxConcurrency: z.number(),
  storageLimitMb: z.number(),
  createdAt: z.string(),
  updatedAt: z.string(),
});

export const ApiKey = z.object({
  id: z.string(),
  tenantId: z.string(),
  prefix: z.string(),
  name: z.string().nullable(),
  rateLimitPerHour: z.number().nullable(),
  createdAt: z.string(),
  revokedAt: z.string().nullable(),
});

/** An API key as returned once, at creation: with the secret. */
export const IssuedApiKey = ApiKey.extend({ key: z.string() });

const MAX_RATE_LIMIT_PER_HOUR = 1_000_000;
const MAX_CONCURRENCY = 1_000;
/** D1's largest database. */
const MAX_STORAGE_LIMIT_MB = 10_240;
const RateLimitPerHour = z.number().int().min(1).max(MAX_RATE_LIMIT_PER_HOUR);

export const CreateTenant = z
  .object({
    name: z.string().min(1).max(100),
    maxTrustLevel: TrustLevel,
    /** Requests per hour that run or check code (default 100). */
    rateLimit: RateLimitPerHour.optional(),
    /** Executions running at once (default 10). */
    maxConcurrency: z.number().int().min(1).max(MAX_CONCURRENCY).optional(),
    /** MiB the tenant's tables (their growth of the jobs' database) and KV entries may take (default 100). */
    storageLimitMb: z.number().int().min(0).max(MAX_STORAGE_LIMIT_MB).optional(),
  })
  .strict();
export const UpdateTenant = CreateTenant.partial().strict();
export const CreateKey = z
  .object({ name: z.string().min(1).max(100).optional(), rateLimit: RateLimitPerHour.optional() })
  .strict();

/** A job that has not finished: what GET, wait and submit answer until the result exists. */
export const ExecutionProgress = z.object({
  id: z.string(),
  status: z.enum(["queued", "running"]),
  runtime: Runtime,
  trustLevel: TrustLevel,
  createdAt: z.string(),
});
export type ExecutionProgress = z.infer<typeof ExecutionProgress>;

export function isFinished(outcome: ExecutionResult | ExecutionProgress): outcome is ExecutionResult {
  return outcome.status !== "queued" && outcome.status !== "running";
}

export const WaitQuery = z
  .object({
    /** How long to hold the request open for the result, ms (at most 30 s). */
    timeout: wholeNumber(0, 30_000).default(10_000),
  })
  .strict();
