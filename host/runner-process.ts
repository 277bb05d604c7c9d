/**
 * One supervised edge runner: a workerd process (through Miniflare) running the edge runner Worker,
 * holding at most one job at a time so a failure is always attributed to the job that caused it.
 *
 * The runtime-level limit comes from a V8 flag on the process: a per-isolate heap cap (an isolate that
 * exceeds it aborts the process, which we report as SANDBOX_MEMORY_LIMIT). A job still running at its
 * deadline plus KILL_GRACE_MS (a hot loop in native code, catastrophic regexp backtracking) is
 * SIGKILLed with its process, as Cloudflare's CPU limit stops it in production. V8's linear-time regexp
 * fallback is deliberately not turned on: it made every job ≈ 3 ms slower (backtrack counting in every
 * regexp, ours included) and would let locally finish what production stops.
 */
import { convertV4MiniflareOptions, Miniflare } from "miniflare";

export const KILL_GRACE_MS = 1_000;
const HEAP_EXHAUSTED = /Reached heap limit|heap out of memory/i;

export interface RunnerOptions {
  script: string;
  /** Authenticates the host to the runner, and the runner's relayed binding calls to the host. */
  token: string;
  /** Where the runner relays its jobs' binding calls. */
  hostUrl: string;
  heapLimitMb: number;
  /**
   * Tests only: a Worker script that stands in for the internet behind the egress gateway
   * (EGRESS_TEST_UPSTREAM). `npm run dev` never sets it.
   */
  egressTestUpstreamScript?: string;
  compatibilityDate: string;
}

/** What the host tells the dispatcher when the runner produced no reply of its own. */
export type RunnerFailureCode =
  | "SANDBOX_TIMEOUT"
  | "SANDBOX_MEMORY_LIMIT"
  | "SANDBOX_RUNNER_CRASHED"
  // A job the pool could not start (see edge-pool.ts).
  | "SANDBOX_UNAVAILABLE";

export type RunOutcome = { kind: "reply"; body: string } | { kind: "failed"; code: RunnerFailureCode; message: string };

export class RunnerProcess {
  readonly #mf: Miniflare;
  readonly #url: URL;
  readonly #token: string;
  readonly #deathSigns: { heapExhausted: boolean };
  #healthy = true;

  private constructor(mf: Miniflare, url: URL, token: string, deathSigns: { heapExhausted: boolean }) {
    this.#mf = mf;
    this.#deathSigns = deathSigns;
    this.#url = url;
    this.#token = token;
  }

  static async start(options: RunnerOptions): Promise<RunnerProcess> {
    // Miniflare reads V8 flags from the environment when it builds the workerd config.
    process.env.MINIFLARE_WORKERD_V8_FLAGS = `--max-old-space-size=${options.heapLimitMb}`;
    // Written by the log handler, which exists before the instance does.
    const deathSigns = { heapExhausted: false };
    const runner = {
      name: "edge-runner",
      modules: true,
      script: options.script,
      compatibilityDate: options.compatibilityDate,
      workerLoaders: { LOADER: {} },
      bindings: { RUNNER_TOKEN: options.token, HOST_URL: options.hostUrl },
    };
    const upstream = options.egressTestUpstreamScript;
    const mf = new Miniflare(
      convertV4MiniflareOptions({
        host: "127.0.0.1",
        port: 0,
        handleStructuredLogs: ({ message }) => {
          if (HEAP_EXHAUSTED.test(message)) deathSigns.heapExhausted = true;
        },
        workers: upstream
          ? [
              { ...runner, serviceBindings: { EGRESS_TEST_UPSTREAM: "egress-upstream" } },
              {
                name: "egress-upstream",
                modules: true,
                scriptPath: upstream,
                compatibilityDate: options.compatibilityDate,
              },
            ]
          : [runner],
      }),
    );
    const url = await mf.ready;
    return new RunnerProcess(mf, url, options.token, deathSigns);
  }

  get healthy(): boolean {
    return this.#healthy;
  }

  /** `deadline`: epoch ms at which the job's time is up (it may have waited for this runner). */
  async run(body: string, deadline: number): Promise<RunOutcome> {
    // What an earlier job of this runner printed says nothing about this one (a job can print it).
    this.#deathSigns.heapExhausted = false;
    const controller = new AbortController();
    const killTimer = setTimeout(() => controller.abort(), Math.max(0, deadline - Date.now()) + KILL_GRACE_MS);
    try {
      const response = await fetch(new URL("/run", this.#url), {
        method: "POST",
        headers: { authorization: `Bearer ${this.#token}`, "content-type": "application/json" },
        body,
        signal: controller.signal,
      });
      const text = await response.text();
      if (!response.ok) return this.#fail("SANDBOX_RUNNER_CRASHED", `the runner answered ${response.status}`);
      return { kind: "reply", body: text };
    } catch {
      if (controller.signal.aborted) {
        return this.#fail(
          "SANDBOX_TIMEOUT",
          `the job was still running ${KILL_GRACE_MS} ms after its timeout; its runner was killed`,
        );
      }
      // Give the process's last words a moment to reach the log handler.
      await new Promise((resolve) => setTimeout(resolve, 50));
      if (this.#deathSigns.heapExhausted) {
        return this.#fail("SANDBOX_MEMORY_LIMIT", "the job exhausted its isolate's memory; its runner was killed");
      }
      return this.#fail("SANDBOX_RUNNER_CRASHED", "the runner process died while running the job");
    } finally {
      clearTimeout(killTimer);
    }
  }

  async ping(timeoutMs: number): Promise<boolean> {
    try {
      const response = await fetch(new URL("/healthz", this.#url), { signal: AbortSignal.timeout(timeoutMs) });
      return response.ok;
    } catch {
      return false;
    }
  }

  async dispose(): Promise<void> {
    this.#healthy = false;
    await this.#mf.dispose().catch(() => undefined);
  }

  #fail(code: RunnerFailureCode, message: string): RunOutcome {
    this.#healthy = false;
    return { kind: "failed", code, message };
  }
}
