/**
 * Chooses where node jobs run: the local sandbox host when `CORDON_HOST_URL` is set (development and
 * tests); otherwise a Cloudflare Sandbox container of the job's cordon (production).
 */
import type { TrustLevel } from "../policy/trust";
import { containerNodeSandbox } from "./cloudflare/container-sandbox";
import type { NodeSandbox } from "./node-sandbox";
import { hostNodeSandbox } from "./host-sandbox";

/**
 * Whether the node home can give a job network: the local host runs an egress proxy per job; the
 * container home does not have one yet (its jobs stay in a loopback-only namespace).
 */
export function nodeHomeHasNetwork(env: Pick<Env, "CORDON_HOST_URL">): boolean {
  return Boolean(env.CORDON_HOST_URL);
}

export function nodeHomeFor(env: Env, cordon: TrustLevel, waitUntil: (promise: Promise<unknown>) => void): NodeSandbox {
  if (env.CORDON_HOST_URL) return hostNodeSandbox(env.CORDON_HOST_URL, env.CORDON_HOST_TOKEN);
  const pool = env.SANDBOX_POOL.get(env.SANDBOX_POOL.idFromName(cordon));
  return containerNodeSandbox(sandboxNamespaceFor(env, cordon), { waitUntil, pool: { cordon, stub: pool } });
}

/** The Sandbox class (and so the container instance type) of a cordon. */
export function sandboxNamespaceFor(env: Env, cordon: TrustLevel) {
  // `untrusted` has no node runtime (the cordon table), so it never reaches a container.
  return cordon === "high"
    ? env.NODE_SANDBOX_HIGH
    : cordon === "medium"
      ? env.NODE_SANDBOX_MEDIUM
      : env.NODE_SANDBOX_LOW;
}
