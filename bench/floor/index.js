/**
 * Bench floor: the least a Worker can do to run the benchmark job through the Worker Loader. One
 * LOADER.load() per request (no id, so a fresh isolate every time, as in the product), with the
 * runtime the product gives its jobs, then the job's own fetch handler with the POSTed input. No auth,
 * validation, storage or logging on purpose.
 */
import { JOB_COMPATIBILITY_DATE, JOB_COMPATIBILITY_FLAGS } from "../../src/edge/job-runtime.ts";

// The benchmark's trivial job (input.a + input.b), written as a Worker module.
const JOB = `export default {
  async fetch(request) {
    const input = await request.json();
    return Response.json(input.a + input.b);
  },
};`;

export default {
  async fetch(request, env) {
    const worker = env.LOADER.load({
      compatibilityDate: JOB_COMPATIBILITY_DATE,
      compatibilityFlags: [...JOB_COMPATIBILITY_FLAGS],
      mainModule: "job.js",
      modules: { "job.js": JOB },
      env: {},
      globalOutbound: null,
    });
    return worker.getEntrypoint().fetch("http://job/", { method: "POST", body: await request.text() });
  },
};
