/**
 * Turns a validated node execution request into a NodeRunRequest: a syntax check of the code (as an
 * ES module, or else as a CommonJS script), the cordon's refused globals, and the limits resolved
 * against the cordon. Refusals are thrown as CordonError before anything runs. No I/O.
 */
import { parse, type Node } from "acorn";
import { full } from "acorn-walk";
import { isStackOverflow, TOO_DEEP_MESSAGE } from "../stack-overflow";
import { CordonError, ErrorCode } from "../errors";
import { LOG_BOUNDS, resolveNodeLimits, type EffectiveNodeLimits } from "../policy/limits";
import { admitNetwork, networkLimits } from "../policy/network";
import { CORDONS, type TrustLevel } from "../policy/trust";
import type { ExecutionRequest } from "../schemas";
import type { NodeRunRequest } from "./protocol";

export interface PreparedNodeJob {
  runtime: "node";
  executionId: string;
  trustLevel: TrustLevel;
  limits: EffectiveNodeLimits & ReturnType<typeof networkLimits>;
  request: NodeRunRequest;
}

export function prepareNodeJob(
  job: ExecutionRequest,
  identity: { executionId: string; trustLevel: TrustLevel; tenantId: string; networkAvailable: boolean },
): PreparedNodeJob {
  const problems = checkNodeCode(job.code, new Set(CORDONS[identity.trustLevel].refusedConstructs));
  if (problems.syntax) {
    throw new CordonError(ErrorCode.VALIDATION_ERROR, `syntax error: ${problems.syntax.message}`, {
      line: problems.syntax.line,
      column: problems.syntax.column,
    });
  }
  if (problems.violations.length > 0) {
    throw new CordonError(ErrorCode.SANDBOX_SECURITY_VIOLATION, "the code uses constructs this trust level refuses", {
      reasons: problems.violations,
    });
  }
  const limits = resolveNodeLimits(identity.trustLevel, {
    timeoutMs: job.limits?.timeout ?? job.timeout,
    cpuTimeMs: job.limits?.cpuTime,
    memoryMb: job.limits?.memory ?? job.memory,
    logBytes: job.limits?.logBytes,
    outputBytes: job.limits?.outputBytes,
    maxFileSize: job.limits?.filesystem?.maxFileSize,
    maxFiles: job.limits?.filesystem?.maxFiles,
    maxSubprocesses: job.limits?.maxSubprocesses,
    maxFileDescriptors: job.limits?.maxFileDescriptors,
  });
  const network = admitNetwork(job.limits?.network, identity.trustLevel);
  if (network !== null && !identity.networkAvailable) {
    throw new CordonError(
      ErrorCode.SANDBOX_NETWORK_BLOCKED,
      "node jobs have no network in this deployment: its node home (containers) has no egress proxy yet",
      { rule: "network_unavailable" },
    );
  }
  return {
    runtime: "node",
    executionId: identity.executionId,
    trustLevel: identity.trustLevel,
    limits: { ...limits, ...networkLimits(network) },
    request: {
      executionId: identity.executionId,
      cordon: identity.trustLevel === "untrusted" ? undefined : identity.trustLevel,
      tenantId: identity.tenantId,
      ...(job.packages?.length ? { packages: job.packages } : {}),
      network,
      code: job.code,
      inputs: job.test ? job.test.cases.map((testCase) => testCase.input) : [job.input ?? null],
      timeoutMs: limits.timeoutMs,
      memoryMb: limits.memoryMb,
      cpuTimeMs: limits.cpuTimeMs,
      captureConsole: job.captureConsole,
      maxLogEntries: LOG_BOUNDS.maxLogEntries,
      maxLogBytes: limits.logBytes,
      maxOutputBytes: limits.outputBytes,
      limits: {
        maxFileSize: limits.maxFileSize,
        maxFiles: limits.maxFiles,
        maxSubprocesses: limits.maxSubprocesses,
        maxFileDescriptors: limits.maxFileDescriptors,
        writable: job.limits?.filesystem?.writable ?? ["/tmp"],
      },
    },
  };
}

export interface NodeCodeProblems {
  syntax?: { message: string; line: number; column: number };
  violations: { rule: "construct-refused"; message: string; line: number; column: number }[];
}

export function checkNodeCode(code: string, refused: ReadonlySet<string>): NodeCodeProblems {
  let program: Node;
  try {
    program = parse(code, { ecmaVersion: "latest", sourceType: "module", locations: true });
  } catch {
    try {
      program = parse(code, {
        ecmaVersion: "latest",
        sourceType: "script",
        locations: true,
        allowReturnOutsideFunction: true,
      });
    } catch (error) {
      const loc = (error as { loc?: { line: number; column: number } }).loc;
      return {
        syntax: {
          message: error instanceof Error ? error.message : String(error),
          line: loc?.line ?? 1,
          column: (loc?.column ?? 0) + 1,
        },
        violations: [],
      };
    }
  }
  const violations: NodeCodeProblems["violations"] = [];
  if (refused.size > 0) {
    try {
      findRefused(program, refused, violations);
    } catch (error) {
      if (!isStackOverflow(error)) throw error;
      return { syntax: { message: TOO_DEEP_MESSAGE, line: 1, column: 1 }, violations: [] };
    }
  }
  return { violations };
}

function findRefused(program: Node, refused: ReadonlySet<string>, violations: NodeCodeProblems["violations"]): void {
  // `type` is acorn-walk's category: declared names are walked as "VariablePattern".
  full(program, (node, _state, type) => {
    const named = node as Node & { name?: string; loc?: { start: { line: number; column: number } } };
    if ((type === "Identifier" || type === "VariablePattern") && named.name && refused.has(named.name)) {
      violations.push({
        rule: "construct-refused",
        message: `\`${named.name}\` is not allowed at this trust level`,
        line: named.loc?.start.line ?? 1,
        column: (named.loc?.start.column ?? 0) + 1,
      });
    }
  });
}
