/**
 * Chooses where node jobs run: the local sandbox host when `CORDON_HOST_URL` is set (development and
 * tests); otherwise a Cloudflare Sandbox container of the job's cordon (production).
 */
import type { TrustLevel } from "../policy/trust";
import { containerNodeSandbox } from "./cloudflare/container-sandbox";
import type { NodeSandbox } from "./node-sandbox";
import { hostNodeSandbox } from "./host-sandbox";

export function nodeHomeFor(env: Env, cordon: TrustLevel, waitUntil: (promise: Promise<unknown>) => void): NodeSandbox {
  if (env.CORDON_HOST_URL) return hostNodeSandbox(env.CORDON_HOST_URL, env.CORDON_HOST_TOKEN);
  // `untrusted` has no node runtime (the cordon table), so it never reaches a container.
  const namespace =
    cordon === "high" ? env.NODE_SANDBOX_HIGH : cordon === "medium" ? env.NODE_SANDBOX_MEDIUM : env.NODE_SANDBOX_LOW;
  return containerNodeSandbox(namespace, { waitUntil });
}
