/**
 * The runtime every edge job's isolate is loaded with: a fixed, tested surface, not whatever the
 * dispatcher is on. Shared with the benchmark's floor Worker (bench/floor), so that it loads the same
 * isolate the product does.
 */
export const JOB_COMPATIBILITY_DATE = "2026-10-20";

/**
 * At this date the runtime turns Node.js compatibility on by default (measured: off at 2026-08-01, on
 * at 2026-09-01). Edge jobs get the Web-standard Workers runtime without it: they cannot import `node:`
 * modules anyway (the instrumenter refuses imports), and the Node layer puts `process`, `Buffer` and
 * Node-style timers in every job's globals, a surface nobody asked for, and costs ≈ 3 ms of CPU to set
 * up in each fresh isolate (bench/README.md). Code that needs Node belongs in a node job.
 */
export const JOB_COMPATIBILITY_FLAGS: readonly string[] = ["no_nodejs_compat", "no_nodejs_compat_v2"];
