/**
 * The same network policy gives the same verdict for edge and node jobs. Each case runs one piece of
 * code (an ES module both runtimes load) through POST /v1/executions twice, once per runtime, under
 * the local sandbox host: edge jobs meet the EgressGateway in their runner process, node jobs the
 * host's egress proxy, the only way out of their sandbox's network namespace. Both send what they let
 * through to the tests' stand-in for the internet (test/egress/upstream/index.js).
 */
import { beforeAll, describe, expect, it } from "vitest";
import { createTenant, type TestTenant } from "../helpers";

let tenant: TestTenant;
const RUNTIMES = ["edge", "node"] as const;
const network = { enabled: true, allowedDomains: ["api.example.com"], maxRequests: 5, maxBytes: 10_000 };

beforeAll(async () => {
  tenant = await createTenant({ maxTrustLevel: "high" });
});

async function runBoth(code: string, limits: Record<string, unknown> = { network }) {
  const [edge, node] = await Promise.all(RUNTIMES.map((runtime) => tenant.execute({ runtime, code, limits })));
  return { edge: edge!, node: node! };
}

describe.each(RUNTIMES)("egress of %s jobs", (runtime) => {
  it("reaches an allowed host and counts the request and body bytes", async () => {
    const { status, body } = await tenant.execute({
      runtime,
      code: "export default async () => (await fetch('http://api.example.com/hello')).text()",
      limits: { network },
    });
    expect(status).toBe(200);
    expect(body.output).toBe("hello from api.example.com");
    expect(body.metrics).toMatchObject({ networkRequests: 1, networkBytes: 26, networkBlocked: 0 });
    expect(body.limits).toMatchObject({ subrequests: 5, networkBytes: 10_000 });
  });

  it("sends a POST body and reads a streamed response", async () => {
    const { status, body } = await tenant.execute({
      runtime,
      code: `export default async () => {
        const echo = await (await fetch('http://api.example.com/echo', { method: 'POST', body: 'twelve bytes' })).json()
        const stream = await (await fetch('http://api.example.com/stream?chunks=4&size=5')).text()
        return { method: echo.method, body: echo.body, stream }
      }`,
      limits: { network },
    });
    expect(status).toBe(200);
    expect(body.output).toEqual({ method: "POST", body: "twelve bytes", stream: "00000111112222233333" });
    expect(body.metrics).toMatchObject({ networkRequests: 2, networkBlocked: 0 });
  });
});

describe("edge and node jobs get the same verdicts", () => {
  const refused = [
    { name: "an unlisted host", url: "http://evil.example.net/", rule: "not_allowlisted", host: "evil.example.net" },
    { name: "an IP literal", url: "http://1.1.1.1/", rule: "ip_literal", host: "1.1.1.1" },
    {
      name: "a metadata address",
      url: "http://169.254.169.254/latest",
      rule: "metadata_address",
      host: "169.254.169.254",
    },
    { name: "localhost", url: "http://localhost/", rule: "localhost", host: "localhost" },
    { name: "a blocked subdomain", url: "http://ads.example.com/", rule: "blocked_domain", host: "ads.example.com" },
    {
      name: "a port other than 80 and 443",
      url: "http://api.example.com:8080/",
      rule: "port_not_allowed",
      host: "api.example.com",
    },
    {
      name: "a redirect to a private address",
      url: "http://api.example.com/redirect?to=http://10.0.0.1/",
      rule: "private_address",
      host: "10.0.0.1",
    },
  ];
  it.each(refused)("refuses $name, even when the job catches the error", async ({ url, rule, host }) => {
    const both = await runBoth(
      `export default async () => { try { await fetch(${JSON.stringify(url)}) } catch {} return 'swallowed' }`,
      {
        network: {
          ...network,
          allowedDomains: ["api.example.com", "*.example.com"],
          blockedDomains: ["ads.example.com"],
        },
      },
    );
    for (const { status, body } of [both.edge, both.node]) {
      expect(status).toBe(403);
      expect(body.error).toMatchObject({ code: "SANDBOX_NETWORK_BLOCKED", rule, host });
      expect(body.metrics?.networkBlocked).toBe(1);
    }
  });

  it("cuts the request budget at the same request", async () => {
    const both = await runBoth(
      `export default async () => {
        const seen = []
        for (let i = 0; i < 3; i++) {
          try { seen.push((await fetch('http://api.example.com/hello')).status) } catch { seen.push('refused') }
        }
        return seen
      }`,
      { network: { ...network, maxRequests: 2 } },
    );
    for (const { body } of [both.edge, both.node]) {
      expect(body.error).toMatchObject({ code: "SANDBOX_NETWORK_BLOCKED", rule: "request_budget" });
      expect(body.metrics).toMatchObject({ networkRequests: 2, networkBytes: 52 });
    }
  });

  it("cuts a response at the byte budget, exactly", async () => {
    const both = await runBoth(
      `export default async () => {
        try { return (await (await fetch('http://api.example.com/bytes?n=100')).text()).length } catch { return 'cut' }
      }`,
      { network: { ...network, maxBytes: 40 } },
    );
    for (const { body } of [both.edge, both.node]) {
      expect(body.error).toMatchObject({ code: "SANDBOX_NETWORK_BLOCKED", rule: "byte_budget" });
      expect(body.metrics).toMatchObject({ networkRequests: 1, networkBytes: 40 });
    }
  });

  it("names the host a job without network tried to reach", async () => {
    const both = await runBoth(
      "export default async () => { try { await fetch('http://api.example.com/hello') } catch {} return 'swallowed' }",
      {},
    );
    for (const { status, body } of [both.edge, both.node]) {
      expect(status).toBe(403);
      expect(body.error).toMatchObject({ code: "SANDBOX_NETWORK_BLOCKED", host: "api.example.com" });
      expect(body.metrics?.networkRequests).toBe(0);
    }
  });
});
