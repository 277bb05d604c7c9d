/**
 * Starts the local sandbox host for the test run (runs in Node, outside workerd): the dispatcher under
 * test sends edge jobs to it, so a runaway job kills a runner process, never the test runtime.
 */
import { fileURLToPath } from "node:url";
import { startHost, type RunningHost } from "../host/main.ts";

let host: RunningHost | undefined;

export async function setup(): Promise<void> {
  host = await startHost({
    port: Number(process.env.CORDON_TEST_HOST_PORT),
    token: process.env.CORDON_TEST_HOST_TOKEN ?? "",
    edgeRunners: 2,
    heapLimitMb: 128,
    egressTestUpstreamScript: fileURLToPath(new URL("./egress/upstream/index.js", import.meta.url)),
  });
}

export async function teardown(): Promise<void> {
  await host?.close();
}
