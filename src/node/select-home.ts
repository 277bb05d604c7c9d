/**
 * Chooses where node jobs run: the local sandbox host when `CORDON_HOST_URL` is set (development and
 * tests); otherwise a Cloudflare Sandbox container (production).
 */
import { hostNodeSandbox, type NodeHome } from "./host-sandbox";

export function nodeHomeFor(env: Env): NodeHome {
  if (env.CORDON_HOST_URL) return hostNodeSandbox(env.CORDON_HOST_URL, env.CORDON_HOST_TOKEN);
  return {
    run: async () => ({
      ok: false,
      error: {
        code: "SANDBOX_UNAVAILABLE",
        message: "node jobs need the container home, which this deployment does not configure",
      },
    }),
    cancel: async () => undefined,
  };
}
