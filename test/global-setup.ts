/**
 * Starts the local sandbox host for the test run (runs in Node, outside workerd): the dispatcher under
 * test sends edge jobs to it, so a runaway job kills a runner process, never the test runtime.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startHost, type RunningHost } from "../host/main.ts";

let host: RunningHost | undefined;
/** The host's copy of the jobs' database: the tests' own, gone after the run. */
const jobDbPersistDir = mkdtempSync(join(tmpdir(), "cordon-test-job-db-"));

export async function setup(): Promise<void> {
  host = await startHost({
    port: Number(process.env.CORDON_TEST_HOST_PORT),
    token: process.env.CORDON_TEST_HOST_TOKEN ?? "",
    edgeRunners: 2,
    heapLimitMb: 128,
    jobDbPersistDir,
    egressTestUpstreamScript: fileURLToPath(new URL("./egress/upstream/index.js", import.meta.url)),
  });
}

export async function teardown(): Promise<void> {
  await host?.close();
  rmSync(jobDbPersistDir, { recursive: true, force: true });
}
