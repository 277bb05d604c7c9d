/**
 * The contract of a node job between the dispatcher and a node home (the local sandbox host's
 * `POST /v1/node/run`, or a Cloudflare Sandbox container). The request is validated by the home before
 * anything is spawned; the reply is validated by the dispatcher (`NodeRunReplySchema`), since it is
 * built next to code we do not trust.
 */
import { z } from "zod";
import { EgressReport } from "../egress/meter.ts";
import { EgressPolicy } from "../egress/policy.ts";
import { MAX_MESSAGE_CHARS, MAX_NAME_CHARS, MAX_STACK_CHARS } from "../untrusted-output.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

/** Mount points the sandbox needs for itself; a writable tmpfs may not shadow them. */
const RESERVED_PATHS = ["/proc", "/dev", "/usr", "/lib", "/lib64", "/lib32", "/opt", "/workspace"];
const SAFE_PATH = /^(\/[A-Za-z0-9._-]+)+$/;

const WritablePath = z
  .string()
  .max(128)
  .refine((path) => SAFE_PATH.test(path) && !path.split("/").some((part) => part === "." || part === ".."), {
    message: "must be an absolute, normalised path of [A-Za-z0-9._-] segments",
  })
  .refine(
    (path) =>
      !RESERVED_PATHS.includes(path) && !RESERVED_PATHS.some((r) => r !== "/workspace" && path.startsWith(`${r}/`)),
    {
      message: `may not be ${RESERVED_PATHS.join(", ")} or inside them (a sub-directory of /workspace is fine)`,
    },
  );

export const SandboxLimits = z.object({
  /** RLIMIT_FSIZE: the largest file any process in the sandbox may write, in bytes. */
  maxFileSize: z
    .number()
    .int()
    .min(1)
    .max(1024 * MiB)
    .default(16 * MiB),
  /** Files and directories in the writable paths, counted by the host while the job runs. */
  maxFiles: z.number().int().min(0).max(100_000).default(1_000),
  /** Processes the job may run at once besides its own Node process (polled; see README for the backstop). */
  maxSubprocesses: z.number().int().min(0).max(64).default(0),
  /** RLIMIT_NOFILE. Node itself holds about 25 descriptors before the job runs. */
  maxFileDescriptors: z.number().int().min(32).max(65_536).default(256),
  /** Paths inside the sandbox that get a private, size-bounded tmpfs; everything else is read-only. */
  writable: z
    .array(WritablePath)
    .max(8)
    .refine((paths) => new Set(paths).size === paths.length, { message: "must not repeat a path" })
    .default(["/tmp"]),
});
export type SandboxLimits = z.infer<typeof SandboxLimits>;

/** The trust cordons (as in src/policy/trust.ts); a node home keeps its warm sandboxes apart per cordon. */
export const NODE_CORDONS = ["high", "medium", "low", "untrusted"] as const;
export type NodeCordon = (typeof NODE_CORDONS)[number];

/** Where the installed packages appear in the sandbox (read-only); Node resolves bare imports from here. */
export const PACKAGES_MOUNT = "/workspace/node_modules";
/** npm's limit for a package name, scope included. */
const MAX_PACKAGE_NAME_CHARS = 214;
/**
 * `name@exact-version` and nothing else npm would also accept (a range, a dist-tag, an alias, a URL, a
 * git or file spec, build metadata): what gets installed must be exactly what was asked for. Uppercase
 * is allowed because some old, still popular packages have it in their names (e.g. JSONStream).
 */
const PACKAGE_SPEC =
  /^((?:@[A-Za-z0-9][A-Za-z0-9._-]*\/)?[A-Za-z0-9][A-Za-z0-9._-]*)@(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$/;

/** The package name of a spec that passed PACKAGE_SPEC. */
export function packageName(spec: string): string {
  return spec.slice(0, spec.lastIndexOf("@"));
}

const PackageSpec = z
  .string()
  .max(MAX_PACKAGE_NAME_CHARS + 64)
  .refine((spec) => PACKAGE_SPEC.test(spec) && packageName(spec).length <= MAX_PACKAGE_NAME_CHARS, {
    message: "must be name@exact-version (e.g. lodash@4.17.21 or @scope/name@1.2.3-beta.1): no ranges, tags, URLs",
  });

/** The request's fields; NodeRunRequest adds the checks that involve more than one of them. */
const NodeRunRequestFields = z.object({
  executionId: z.string().min(1).max(128),
  code: z
    .string()
    .min(1)
    .max(4 * MiB),
  /** One call per input. */
  inputs: z.array(z.json()).min(1).max(1_000),
  timeoutMs: z.number().int().min(1).max(600_000),
  memoryMb: z.number().int().min(32).max(16_384).default(128),
  /** RLIMIT_CPU is whole seconds: this is rounded up. Defaults to the wall timeout. */
  cpuTimeMs: z.number().int().min(1).max(600_000).optional(),
  captureConsole: z.boolean().default(true),
  maxLogEntries: z.number().int().min(0).max(10_000).default(1_000),
  maxLogBytes: z
    .number()
    .int()
    .min(0)
    .max(4 * MiB)
    .default(64 * KiB),
  maxOutputBytes: z
    .number()
    .int()
    .min(1)
    .max(16 * MiB)
    .default(1 * MiB),
  limits: SandboxLimits.default(SandboxLimits.parse({})),
  /**
   * npm packages, installed by the home outside the sandbox with install scripts disabled, and mounted
   * read-only at PACKAGES_MOUNT. Each name at most once.
   */
  packages: z
    .array(PackageSpec)
    .max(20)
    .refine((specs) => new Set(specs.map(packageName)).size === specs.length, {
      message: "must not name a package twice",
    })
    .optional(),
  /** The job's trust cordon; warm sandboxes are never shared between cordons. The home's default is "high". */
  cordon: z.enum(NODE_CORDONS).optional(),
  /** Who the job belongs to (for the home's bookkeeping; a sandbox never serves two jobs either way). */
  tenantId: z.string().min(1).max(128).optional(),
  /**
   * The job's egress policy (src/egress/policy.ts), applied by the home's egress proxy to every
   * connection the job opens. Absent or null: no network; every attempt is refused and recorded.
   */
  network: EgressPolicy.nullable().optional(),
});

export const NodeRunRequest = NodeRunRequestFields.refine(
  (request) =>
    !request.packages?.length ||
    !request.limits.writable.some((path) => path === PACKAGES_MOUNT || path.startsWith(`${PACKAGES_MOUNT}/`)),
  {
    message: `limits.writable may not be ${PACKAGES_MOUNT} or inside it when packages are installed`,
    path: ["limits"],
  },
);
export type NodeRunRequest = z.infer<typeof NodeRunRequest>;

export interface ErrorInfo {
  name: string;
  message: string;
  stack: string;
}

export type CallOutcome = { ok: true; outputJson: string } | { ok: false; error: ErrorInfo };

export type LogLevel = "log" | "info" | "warn" | "error" | "debug";
export const LOG_LEVELS: readonly LogLevel[] = ["log", "info", "warn", "error", "debug"];

export interface LogEntry {
  level: LogLevel;
  message: string;
  timestamp: number;
}

export type LimitCode = "SANDBOX_TIMEOUT" | "SANDBOX_MEMORY_LIMIT" | "SANDBOX_SECURITY_VIOLATION";

export interface LimitHit {
  code: LimitCode;
  /** The request field that was exceeded, e.g. "timeoutMs" or "limits.maxFileSize". */
  limit: string;
  message: string;
}

/** hit: the set was installed already; miss: this job's request installed it; shared: joined an install in flight. */
export type PackageCacheOutcome = "hit" | "miss" | "shared";

export interface NodeRunMetrics {
  runMs: number;
  cpuTimeMs: number;
  peakMemoryMb: number;
  filesWritten: number;
  /** false when the job was handed a pre-started (warm) sandbox. Absent from homes without a pool. */
  coldStart?: boolean;
  /** Only with packages: how long the job waited for them, ms (≈ 0 on a cache hit). */
  installMs?: number;
  packageCache?: PackageCacheOutcome;
}

/**
 * Why the packages could not be installed (with `ok: false`, code SANDBOX_UNAVAILABLE). not-found: a
 * name or version the registry does not have (the caller's mistake); registry: the registry could not be
 * reached or answered an error; timeout: the install ran past the home's bound; too-large: the installed
 * tree is bigger than the home's cache; unavailable: the home cannot install (no npm); failed: anything else.
 */
export const INSTALL_ERROR_REASONS = [
  "not-found",
  "registry",
  "timeout",
  "too-large",
  "unavailable",
  "failed",
] as const;
export type InstallErrorReason = (typeof INSTALL_ERROR_REASONS)[number];

export interface InstallError {
  reason: InstallErrorReason;
  /** npm's error code and the spec it named, when it said (never npm's raw output). */
  detail: string;
}

export interface NodeRunReport {
  calls: CallOutcome[];
  logs: LogEntry[];
  logBytes: number;
  logsDropped: number;
  stdout: string;
  stderr: string;
  metrics: NodeRunMetrics;
  limitHit: LimitHit | null;
  /** The job's network use and refusals, from the home's egress proxy (absent from homes without one). */
  egress?: EgressReport;
}

export type NodeRunReply =
  | { ok: true; report: NodeRunReport }
  | { ok: false; error: { code: "SANDBOX_UNAVAILABLE"; message: string; installError?: InstallError } };

const ErrorInfoSchema = z.object({ name: z.string(), message: z.string(), stack: z.string() });

/** The reply as the dispatcher parses it. */
export const NodeRunReplySchema = z.discriminatedUnion("ok", [
  z.object({
    ok: z.literal(true),
    report: z.object({
      calls: z.array(
        z.discriminatedUnion("ok", [
          z.object({ ok: z.literal(true), outputJson: z.string() }),
          z.object({ ok: z.literal(false), error: ErrorInfoSchema }),
        ]),
      ),
      logs: z.array(
        z.object({
          level: z.enum(["log", "info", "warn", "error", "debug"]),
          message: z.string(),
          timestamp: z.number(),
        }),
      ),
      logBytes: z.number(),
      logsDropped: z.number(),
      stdout: z.string(),
      stderr: z.string(),
      metrics: z.object({
        runMs: z.number(),
        cpuTimeMs: z.number(),
        peakMemoryMb: z.number(),
        filesWritten: z.number(),
        coldStart: z.boolean().optional(),
        installMs: z.number().optional(),
        packageCache: z.enum(["hit", "miss", "shared"]).optional(),
      }),
      limitHit: z
        .object({
          code: z.enum(["SANDBOX_TIMEOUT", "SANDBOX_MEMORY_LIMIT", "SANDBOX_SECURITY_VIOLATION"]),
          limit: z.string(),
          message: z.string(),
        })
        .nullable(),
      egress: EgressReport.optional(),
    }),
  }),
  z.object({
    ok: z.literal(false),
    error: z.object({
      code: z.literal("SANDBOX_UNAVAILABLE"),
      message: z.string(),
      installError: z
        .object({
          reason: z.enum(INSTALL_ERROR_REASONS),
          detail: z.string(),
        })
        .optional(),
    }),
  }),
]);

/**
 * The records the job harness (host/node/harness.mjs) writes, one JSON object per nonce-tagged line;
 * both homes parse them with this schema (they were written next to the job's code).
 */
export const HarnessErrorRecord = z.object({
  name: z.string(),
  message: z.string(),
  stack: z.string(),
  code: z.string().optional(),
});

export type HarnessErrorRecord = z.infer<typeof HarnessErrorRecord>;

// A plain union: two record shapes share t = "call" (told apart by ok).
export const HarnessRecord = z.union([
  z.object({ t: z.literal("ready") }),
  z.object({ t: z.literal("log"), level: z.string(), message: z.string(), timestamp: z.number() }),
  z.object({ t: z.literal("call"), index: z.number().int(), ok: z.literal(true), outputJson: z.string() }),
  z.object({ t: z.literal("call"), index: z.number().int(), ok: z.literal(false), error: HarnessErrorRecord }),
  z.object({ t: z.literal("uncaught"), error: HarnessErrorRecord }),
  z.object({
    t: z.literal("done"),
    logsDropped: z.number().int().min(0),
    maxRssKb: z.number().min(0),
    cpuMs: z.number().min(0),
  }),
]);
export type HarnessRecord = z.infer<typeof HarnessRecord>;

/** The limit hits both homes read from the same errno codes and signals, worded once. */
export const LIMIT_HITS = {
  subprocesses: (max: number): LimitHit => ({
    code: "SANDBOX_SECURITY_VIOLATION",
    limit: "limits.maxSubprocesses",
    message: `the job tried to run more than ${max} subprocesses`,
  }),
  fileSize: (max: number): LimitHit => ({
    code: "SANDBOX_SECURITY_VIOLATION",
    limit: "limits.maxFileSize",
    message: `the job tried to write a file larger than ${max} bytes`,
  }),
  fileDescriptors: (max: number): LimitHit => ({
    code: "SANDBOX_SECURITY_VIOLATION",
    limit: "limits.maxFileDescriptors",
    message: `the job tried to hold more than ${max} open file descriptors`,
  }),
};

/** What sizes a job's records channel: the setup the harness gets. */
export interface RecordBounds {
  inputs: number;
  maxLogEntries: number;
  maxLogBytes: number;
  maxOutputBytes: number;
}

/** An error's name, message and stack in a record, as the harness cuts them. */
const RECORD_ERROR_CHARS = MAX_NAME_CHARS + MAX_MESSAGE_CHARS + MAX_STACK_CHARS;

/**
 * The longest record line a harness writes: a call's. A record escapes its strings once more, so an
 * output's `"` and `\` double, and an error's control characters take six bytes (\u0001).
 */
export function maxRecordLineBytes(bounds: RecordBounds): number {
  return 2 * bounds.maxOutputBytes + 6 * RECORD_ERROR_CHARS + 4096;
}

/**
 * Bytes of records a job may need, in either home: every output at its limit, every log entry (its
 * control characters escaped), and framing. A home reads no more than this.
 */
export function recordsBudget(bounds: RecordBounds): number {
  return (
    bounds.inputs * (2 * bounds.maxOutputBytes + 6 * RECORD_ERROR_CHARS + 1024) +
    6 * bounds.maxLogBytes +
    bounds.maxLogEntries * 512 +
    1024 * 1024
  );
}

/**
 * How both homes start Node for a job, after `--max-old-space-size`. Fixed pool sizes keep a Node
 * process's thread count, and so the pids budget, predictable. `--no-addons` refuses native addons
 * and `process.dlopen`. The permission model is on only to refuse the inspector: through
 * `node:inspector` (or `process.binding("inspector")`) a job could walk the heap to functions and
 * objects the harness keeps from it, such as `process.execve` (which replaces the process without
 * forking, so the pids limit never sees the native code it runs) and the records' nonce. Everything
 * else stays as without it: files (the sandbox's mounts decide), child processes and worker threads
 * (the pids limit decides), WASI; the flags' own warnings are silenced (they would land in the job's
 * stderr).
 */
export const JOB_NODE_FLAGS: readonly string[] = [
  "--v8-pool-size=4",
  "--no-addons",
  "--permission",
  "--allow-fs-read=*",
  "--allow-fs-write=*",
  "--allow-child-process",
  "--allow-worker",
  "--allow-wasi",
  "--disable-warning=SecurityWarning",
];
