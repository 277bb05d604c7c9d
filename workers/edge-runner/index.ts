/**
 * The edge runner Worker: what the local sandbox host runs in each supervised workerd process.
 * It accepts one runner request over loopback HTTP (from the host only, checked by token) and runs it
 * through its own Worker Loader with the same code the dispatcher uses in production. A job that wedges
 * or exhausts this process takes down only this process; the host notices and replaces it.
 */
import { RunnerRequest } from "../../src/edge/protocol";
import { runInLoader } from "../../src/edge/runner";

interface RunnerEnv {
  LOADER: WorkerLoader;
  RUNNER_TOKEN: string;
}

export default {
  async fetch(request: Request, env: RunnerEnv): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/healthz") return new Response("ok");
    if (url.pathname !== "/run" || request.method !== "POST") return new Response("not found", { status: 404 });
    if (request.headers.get("authorization") !== `Bearer ${env.RUNNER_TOKEN}`) {
      return new Response("unauthorized", { status: 401 });
    }
    const parsed = RunnerRequest.safeParse(await request.json().catch(() => null));
    if (!parsed.success) return Response.json({ error: "malformed runner request" }, { status: 400 });
    return Response.json(await runInLoader(env.LOADER, parsed.data));
  },
} satisfies ExportedHandler<RunnerEnv>;
