/**
 * An example Worker that runs jobs on Cordon through a service binding (see its wrangler.toml).
 *
 *   POST /run  {"code": "...", "input": ...}  → the job's result
 *
 * The binding `CORDON` points at Cordon's `SandboxService` entrypoint; `CORDON_API_KEY` is a secret
 * holding the calling tenant's API key. Plain JavaScript so it runs without a build step.
 */
export default {
  /** @param {Request} request @param {{ CORDON: any, CORDON_API_KEY: string }} env */
  async fetch(request, env) {
    if (request.method !== "POST" || new URL(request.url).pathname !== "/run") {
      return Response.json({ error: "POST /run" }, { status: 404 });
    }
    const { code, input } = await request.json();
    const reply = await env.CORDON.execute(env.CORDON_API_KEY, { runtime: "edge", code, input });
    if (!reply.ok) return Response.json(reply, { status: 502 });
    return Response.json({
      output: reply.value.output,
      success: reply.value.success,
      error: reply.value.error ?? null,
      rate: reply.rate,
    });
  },
};
