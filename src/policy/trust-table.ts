/** Renders the trust cordon table for the README from the policy module (a test keeps them equal). No I/O. */
import { CORDONS, TRUST_LEVELS, type LimitRange } from "./trust";

const LIMIT_LABELS: Record<keyof (typeof CORDONS)["high"]["limits"], string> = {
  timeoutMs: "edge timeout (ms)",
  cpuTimeMs: "edge cpuTime (ms)",
  memoryMb: "edge memory (MB)",
  logBytes: "log bytes",
  outputBytes: "output bytes",
  subrequests: "subrequests",
  networkBytes: "network bytes",
  bindingCalls: "binding calls",
};

const NODE_LIMIT_LABELS: Record<keyof (typeof CORDONS)["high"]["nodeLimits"], string> = {
  timeoutMs: "timeout (ms)",
  cpuTimeMs: "cpuTime (ms)",
  memoryMb: "memory (MB)",
  maxFileSize: "max file size (bytes)",
  maxFiles: "max files",
  maxSubprocesses: "max subprocesses",
  maxFileDescriptors: "max file descriptors",
};

export function renderTrustTable(): string {
  const header = `| | ${TRUST_LEVELS.join(" | ")} |`;
  const rule = `| --- | ${TRUST_LEVELS.map(() => "---").join(" | ")} |`;
  const limitRows = (Object.keys(LIMIT_LABELS) as (keyof typeof LIMIT_LABELS)[]).map(
    (name) =>
      `| ${LIMIT_LABELS[name]}: default / max | ${TRUST_LEVELS.map((level) => range(CORDONS[level].limits[name])).join(" | ")} |`,
  );
  const listRow = (label: string, pick: (level: (typeof TRUST_LEVELS)[number]) => readonly string[]) =>
    `| ${label} | ${TRUST_LEVELS.map((level) => pick(level).join(", ") || "none").join(" | ")} |`;
  const nodeRows = (Object.keys(NODE_LIMIT_LABELS) as (keyof typeof NODE_LIMIT_LABELS)[]).map(
    (name) =>
      `| node ${NODE_LIMIT_LABELS[name]}: default / max | ${TRUST_LEVELS.map((level) => range(CORDONS[level].nodeLimits[name])).join(" | ")} |`,
  );
  return [
    header,
    rule,
    ...limitRows,
    ...nodeRows,
    listRow("runtimes", (level) => CORDONS[level].runtimes),
    listRow("bindings", (level) => CORDONS[level].bindings),
    listRow("SQL statements", (level) => CORDONS[level].sqlStatementKinds),
    listRow("refused globals", (level) => CORDONS[level].refusedConstructs.map((name) => `\`${name}\``)),
  ].join("\n");
}

function range(value: LimitRange): string {
  return `${value.default} / ${value.max}`;
}
