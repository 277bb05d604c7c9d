/**
 * The runtime every edge job's isolate is loaded with: a fixed, tested surface, not whatever the
 * dispatcher is on. Shared with the benchmark's floor Worker (bench/floor), so that it loads the same
 * isolate the product does.
 */
export const JOB_COMPATIBILITY_DATE = "2026-10-20";

/**
 * At this date the runtime has Node.js compatibility on by default (a job loaded with the date alone
 * sees `process`, `Buffer` and Node's timers). Edge jobs get the Web-standard
 * Workers runtime without it: they cannot import `node:` modules anyway (the instrumenter refuses
 * imports), and the Node layer adds `process`, `Buffer` and Node-style timers to every job's globals,
 * a surface nobody asked for, and costs ≈ 2.5 ms of CPU to set up in each fresh isolate (measured, see
 * bench/README.md). Code that needs Node belongs in a node job.
 */
export const JOB_COMPATIBILITY_FLAGS: readonly string[] = ["no_nodejs_compat", "no_nodejs_compat_v2"];
