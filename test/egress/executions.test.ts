/**
 * Network egress through the whole product path under the local sandbox host (the path `npm run dev`
 * takes): POST /v1/executions → tracker → host runner process → EgressGateway in that process. The
 * internet is the test upstream the host wires in for the tests only.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { createTenant, type TestTenant } from "../helpers";

let tenant: TestTenant;
const network = { enabled: true, allowedDomains: ["api.example.com"], maxRequests: 5, maxBytes: 10_000 };

beforeAll(async () => {
  tenant = await createTenant({ maxTrustLevel: "high" });
});

describe("network egress through POST /v1/executions (local host)", () => {
  it("lets an allowed host answer and counts the request and bytes", async () => {
    const { status, body } = await tenant.execute({
      code: "export default async () => (await fetch('https://api.example.com/hello')).text()",
      limits: { network },
    });
    expect(status).toBe(200);
    expect(body.output).toBe("hello from api.example.com");
    expect(body.metrics).toMatchObject({ networkRequests: 1, networkBlocked: 0 });
    expect(body.metrics?.networkBytes).toBeGreaterThan(0);
    expect(body.limits).toMatchObject({ subrequests: 5, networkBytes: 10_000 });
  });

  it("fails the job on an unlisted host or a private address, even when the job catches the refusal", async () => {
    const { status, body } = await tenant.execute({
      code: `export default async () => {
        for (const url of ['https://evil.example.net/', 'http://169.254.169.254/latest']) {
          try { await fetch(url) } catch {}
        }
        return 'swallowed'
      }`,
      limits: { network },
    });
    expect(status).toBe(403);
    expect(body.error).toMatchObject({
      code: "SANDBOX_NETWORK_BLOCKED",
      host: "evil.example.net",
      rule: "not_allowlisted",
    });
    expect(body.metrics?.networkBlocked).toBe(2);
  });

  it.each(["edge", "node"] as const)(
    "refuses %s jobs network at a level without it, before running",
    async (runtime) => {
      const low = await tenant.execute({
        runtime,
        code: "export default async () => 1",
        trustLevel: "low",
        limits: { network },
      });
      expect(low.status).toBe(403);
      expect(low.body.error).toMatchObject({ code: "SANDBOX_NETWORK_BLOCKED", rule: "network_disabled" });
    },
  );
});
