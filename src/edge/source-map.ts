/**
 * Maps stack traces of an instrumented job back to the job's own source, and hides our frames.
 * A frame in the job module (`job.js:LINE:COL`) is rewritten to the original line and column; frames
 * in our harness and guard modules are dropped, so the caller sees only their code.
 */
import { originalPositionFor, TraceMap } from "@jridgewell/trace-mapping";
import { GUARD_MODULE, JOB_MODULE, SOCKETS_SHIM_MODULE } from "./instrument";

export interface SourceMapV3 {
  version: 3;
  sources: string[];
  names: string[];
  mappings: string;
  file?: string;
  sourcesContent?: (string | null)[];
}

const INTERNAL_MODULES = ["harness.js", GUARD_MODULE, SOCKETS_SHIM_MODULE];
const JOB_FRAME = new RegExp(`${JOB_MODULE.replace(".", "\\.")}:(\\d+):(\\d+)`, "g");

/**
 * Decoding a map costs ≈ 30 ms for 256 KiB of code: once per job (a job with 50 failing test cases
 * remaps 50 stacks), and only for a stack that has a frame of the job.
 */
const tracers = new WeakMap<SourceMapV3, TraceMap>();

function tracerFor(map: SourceMapV3): TraceMap {
  let tracer = tracers.get(map);
  if (!tracer) tracers.set(map, (tracer = new TraceMap(map)));
  return tracer;
}

export function remapStack(stack: string, map: SourceMapV3): string {
  return stack
    .split("\n")
    .filter((line) => !INTERNAL_MODULES.some((name) => line.includes(name)))
    .map((line) =>
      line.replace(JOB_FRAME, (whole, lineText: string, columnText: string) => {
        const original = originalPositionFor(tracerFor(map), {
          line: Number(lineText),
          column: Number(columnText) - 1,
        });
        if (original.line === null) return whole;
        return `${JOB_MODULE}:${original.line}:${original.column + 1}`;
      }),
    )
    .join("\n");
}

/** The first `job.js:LINE:COL` position in a (remapped) stack: where the job was when it stopped. */
export function firstJobLocation(stack: string): { line: number; column: number } | undefined {
  const match = new RegExp(`${JOB_MODULE.replace(".", "\\.")}:(\\d+):(\\d+)`).exec(stack);
  return match ? { line: Number(match[1]), column: Number(match[2]) } : undefined;
}
