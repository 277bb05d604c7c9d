/**
 * The gateway as the real `globalOutbound` of a Worker Loader isolate: the job's fetch() and connect()
 * reach `EgressGateway` through `ctx.exports`, with the refusal wrapper (`cordon-egress.js`) installed.
 * The tests' stand-in for the internet is the EGRESS_TEST_UPSTREAM auxiliary Worker (vitest.config.ts).
 */
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { EgressGatewayProps } from "../../src/egress/gateway";
import { JOB_COMPATIBILITY_DATE, JOB_COMPATIBILITY_FLAGS } from "../../src/edge/job-runtime";
import { EGRESS_FETCH_SOURCE, EGRESS_MODULE } from "../../src/egress/isolate";
import { EgressMeter, activateEgressMeter } from "../../src/egress/meter";
import type { EgressPolicy } from "../../src/egress/policy";

type GatewayFactory = (options: { props: EgressGatewayProps }) => Fetcher;
const gatewayFactory = (exports as unknown as { EgressGateway: GatewayFactory }).EgressGateway;

/** A stand-in job: runs fetch/connect steps and reports what the job itself saw. */
const PROBE = String.raw`
import { WorkerEntrypoint } from "cloudflare:workers";
import { installEgressFetch } from "./${EGRESS_MODULE}";

export class Probe extends WorkerEntrypoint {
  async run(steps) {
    installEgressFetch();
    const seen = [];
    for (const step of steps) {
      try {
        if (step.connect) {
          const { connect } = await import("cloudflare:sockets");
          const socket = connect(step.connect);
          await socket.opened;
          const writer = socket.writable.getWriter();
          await writer.write(new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"));
          const read = await socket.readable.getReader().read();
          seen.push({ ok: true, connected: !read.done });
          continue;
        }
        const response = await fetch(step.url, step.init);
        const text = await response.text();
        seen.push({ ok: true, status: response.status, text: text.slice(0, 200) });
      } catch (error) {
        seen.push({ ok: false, name: error.name, code: error.code, rule: error.rule, message: String(error.message) });
      }
    }
    return seen;
  }
}

export default { fetch: () => new Response("probe") };
`;

type Seen =
  | { ok: true; status?: number; text?: string; connected?: boolean }
  | { ok: false; name: string; code?: string; rule?: string; message: string };

async function runProbe(executionId: string, policy: EgressPolicy, steps: unknown[]) {
  if (!gatewayFactory) throw new Error("EgressGateway is not exported by the main module");
  const meter = new EgressMeter(executionId);
  const deactivate = activateEgressMeter(meter);
  try {
    const worker = env.LOADER.load({
      compatibilityDate: JOB_COMPATIBILITY_DATE,
      compatibilityFlags: [...JOB_COMPATIBILITY_FLAGS],
      mainModule: "probe.js",
      modules: { "probe.js": PROBE, [EGRESS_MODULE]: EGRESS_FETCH_SOURCE },
      env: {},
      globalOutbound: gatewayFactory({ props: { executionId, policy } }),
    });
    const probe = worker.getEntrypoint("Probe") as unknown as { run(steps: unknown[]): Promise<Seen[]> };
    return { seen: await probe.run(steps), report: meter.report() };
  } finally {
    deactivate();
  }
}

const POLICY: EgressPolicy = {
  allowedDomains: ["api.example.com"],
  blockedDomains: [],
  maxRequests: 10,
  maxBytes: 5_000,
};

describe("the gateway as a Worker Loader isolate's globalOutbound", () => {
  it("lets allowed fetches through, throws refusals in the job and records them", async () => {
    const { seen, report } = await runProbe(`exec_${crypto.randomUUID()}`, POLICY, [
      { url: "https://api.example.com/hello" },
      { url: "https://api.example.com/echo", init: { method: "POST", body: "abc" } },
      { url: "https://evil.com/hello" },
      { url: "https://api.example.com/redirect?to=http://169.254.169.254/latest/meta-data/" },
    ]);
    expect(seen[0]).toEqual({ ok: true, status: 200, text: "hello from api.example.com" });
    expect(seen[1]).toMatchObject({ ok: true, status: 200 });
    expect(seen[2]).toMatchObject({ ok: false, name: "CordonNetworkBlocked", code: "SANDBOX_NETWORK_BLOCKED" });
    expect(seen[2]).toMatchObject({ rule: "not_allowlisted" });
    expect(seen[3]).toMatchObject({ ok: false, rule: "metadata_address" });
    expect(report).toMatchObject({ requests: 3, bytesSent: 3, refusedCount: 2 });
    expect(report.refusals.map((refusal) => [refusal.rule, refusal.host])).toEqual([
      ["not_allowlisted", "evil.com"],
      ["metadata_address", "169.254.169.254"],
    ]);
  });

  it("cuts a response at the byte budget and refuses connect() sockets", async () => {
    const { seen, report } = await runProbe(`exec_${crypto.randomUUID()}`, POLICY, [
      { url: "https://api.example.com/stream?chunks=10&size=1000" },
      { connect: "api.example.com:443" },
    ]);
    expect(seen[0]).toMatchObject({ ok: false });
    expect(seen[1]).toMatchObject({ ok: false });
    expect(report).toMatchObject({ requests: 1, bytesReceived: 5_000 });
    expect(report.refusals.map((refusal) => refusal.rule)).toEqual(["byte_budget", "socket_not_allowed"]);
  });
});
