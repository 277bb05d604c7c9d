/**
 * prepareNodeJob's network decisions: the request's policy resolved against the cordon, carried to
 * the node home, and refused up front where the home cannot enforce it.
 */
import { describe, expect, it } from "vitest";
import { CordonError } from "../../src/errors";
import { prepareNodeJob } from "../../src/node/prepare";
import { ExecutionRequest } from "../../src/schemas";

const job = ExecutionRequest.parse({
  runtime: "node",
  code: "module.exports = async () => (await fetch('https://api.example.com/')).status",
  limits: { network: { enabled: true, allowedDomains: ["api.example.com"], maxRequests: 3 } },
});
const identity = { executionId: "exec_1", trustLevel: "high" as const, tenantId: "t1" };

describe("prepareNodeJob and the network", () => {
  it("hands the resolved policy to a home that has an egress proxy, and reports its budgets", () => {
    const prepared = prepareNodeJob(job, { ...identity, networkAvailable: true });
    expect(prepared.request.network).toMatchObject({ allowedDomains: ["api.example.com"], maxRequests: 3 });
    expect(prepared.limits).toMatchObject({ subrequests: 3, networkBytes: prepared.request.network?.maxBytes });
  });

  it("refuses, before anything runs, a job with network where the home cannot enforce it", () => {
    const refuse = () => prepareNodeJob(job, { ...identity, networkAvailable: false });
    expect(refuse).toThrow(CordonError);
    expect(refuse).toThrow(expect.objectContaining({ code: "SANDBOX_NETWORK_BLOCKED" }));
  });

  it("gives a job without network a null policy in every home", () => {
    const plain = ExecutionRequest.parse({ runtime: "node", code: "module.exports = async () => 1" });
    for (const networkAvailable of [true, false]) {
      const prepared = prepareNodeJob(plain, { ...identity, networkAvailable });
      expect(prepared.request.network).toBeNull();
      expect(prepared.limits).toMatchObject({ subrequests: 0, networkBytes: 0 });
    }
  });
});
