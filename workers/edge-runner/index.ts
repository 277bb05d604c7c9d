/**
 * The edge runner Worker: what the local sandbox host runs in each supervised workerd process.
 * It accepts one runner request over loopback HTTP (from the host only, checked by token) and runs it
 * through its own Worker Loader with the same code the dispatcher uses in production. A job that wedges
 * or exhausts this process takes down only this process; the host notices and replaces it.
 *
 * The job's bindings are this Worker's JobBindings entrypoint, which relays each call to the host
 * (and from there to the dispatcher, which holds D1 and KV and decides).
 */
import { WorkerEntrypoint } from "cloudflare:workers";
import { RunnerRequest } from "../../src/edge/protocol";
import { runWithEgress, type GatewayFactory } from "../../src/egress/run";
import { runInLoader } from "../../src/edge/runner";

export { EgressGateway } from "../../src/egress/gateway";

interface RunnerEnv {
  LOADER: WorkerLoader;
  RUNNER_TOKEN: string;
  HOST_URL: string;
}

export class JobBindings extends WorkerEntrypoint<RunnerEnv, { executionId: string }> {
  async call(raw: unknown): Promise<unknown> {
    const response = await fetch(`${this.env.HOST_URL}/v1/edge/binding-call`, {
      method: "POST",
      headers: { authorization: `Bearer ${this.env.RUNNER_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ executionId: this.ctx.props.executionId, call: raw }),
    });
    if (!response.ok) {
      return { ok: false, error: { code: "SANDBOX_RUNNER_CRASHED", message: `the host answered ${response.status}` } };
    }
    return response.json();
  }
}

export default {
  async fetch(request: Request, env: RunnerEnv, ctx: ExecutionContext): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/healthz") return new Response("ok");
    if (url.pathname !== "/run" || request.method !== "POST") return new Response("not found", { status: 404 });
    if (request.headers.get("authorization") !== `Bearer ${env.RUNNER_TOKEN}`) {
      return new Response("unauthorized", { status: 401 });
    }
    const parsed = RunnerRequest.safeParse(await request.json().catch(() => null));
    if (!parsed.success) return Response.json({ error: "malformed runner request" }, { status: 400 });
    // ctx.exports of this Worker (not the dispatcher's generated types): its two entrypoints.
    const exports = ctx.exports as unknown as {
      JobBindings: (options: { props: { executionId: string } }) => unknown;
      EgressGateway: GatewayFactory;
    };
    const bindings =
      parsed.data.spec.bindings.length > 0
        ? exports.JobBindings({ props: { executionId: parsed.data.executionId } })
        : undefined;
    const reply = await runWithEgress(parsed.data.executionId, parsed.data.network, exports.EgressGateway, (outbound) =>
      runInLoader(env.LOADER, parsed.data, bindings, outbound),
    );
    return Response.json(reply);
  },
} satisfies ExportedHandler<RunnerEnv>;
