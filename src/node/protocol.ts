/**
 * The contract of a node job between the dispatcher and a node home (the local sandbox host's
 * `POST /v1/node/run`, or a Cloudflare Sandbox container). The request is validated by the home before
 * anything is spawned; the reply is validated by the dispatcher (`NodeRunReplySchema`), since it is
 * built next to code we do not trust.
 */
import { z } from "zod";

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

export const NodeRunRequest = z.object({
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
});
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

export interface NodeRunMetrics {
  runMs: number;
  cpuTimeMs: number;
  peakMemoryMb: number;
  filesWritten: number;
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
}

export type NodeRunReply =
  { ok: true; report: NodeRunReport } | { ok: false; error: { code: "SANDBOX_UNAVAILABLE"; message: string } };

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
      }),
      limitHit: z
        .object({
          code: z.enum(["SANDBOX_TIMEOUT", "SANDBOX_MEMORY_LIMIT", "SANDBOX_SECURITY_VIOLATION"]),
          limit: z.string(),
          message: z.string(),
        })
        .nullable(),
    }),
  }),
  z.object({ ok: z.literal(false), error: z.object({ code: z.literal("SANDBOX_UNAVAILABLE"), message: z.string() }) }),
]);
