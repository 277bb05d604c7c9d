/**
 * Chooses where edge jobs run. With `CORDON_HOST_URL` set (local development and tests) they go to
 * the local sandbox host, whose supervised runner processes survive runaway jobs; otherwise
 * (production) they run in this Worker's Worker Loader, where Cloudflare enforces CPU and memory limits.
 */
import { hostRunner } from "./host-runner";
import type { EdgeRunner } from "./protocol";
import { loaderRunner } from "./runner";

export function edgeRunnerFor(env: Env, exports: Cloudflare.Exports): EdgeRunner {
  if (env.CORDON_HOST_URL) return hostRunner(env.CORDON_HOST_URL, env.CORDON_HOST_TOKEN);
  return loaderRunner(env.LOADER, exports);
}
