/**
 * The egress gateway's logic (`egressFetch`) against a local upstream: the canned responses of
 * test/egress/upstream/index.js, called as a function, so no test needs a network. Each test checks
 * what the job gets back, what reached the upstream, and the meter's counts.
 */
import { describe, expect, it, vi } from "vitest";
import { EgressMeter, activateEgressMeter } from "../../src/egress/meter";
import {
  EGRESS_REFUSAL_HEADER,
  MAX_HELD_BODY_BYTES_PER_JOB,
  MAX_REPLAYABLE_BODY_BYTES,
  egressFetch,
  type Upstream,
} from "../../src/egress/fetch";
import { gatewayConnect, gatewayFetch, type EgressGatewayProps } from "../../src/egress/gateway";
import { runWithEgress, type GatewayFactory } from "../../src/egress/run";
import { MAX_REDIRECT_HOPS, type EgressPolicy } from "../../src/egress/policy";
import { serveCanned } from "./upstream/index.js";

const KiB = 1024;
const MiB = 1024 * KiB;

const POLICY: EgressPolicy = {
  allowedDomains: ["api.example.com", "*.example.net"],
  blockedDomains: ["evil.example.net"],
  maxRequests: 50,
  maxBytes: 10 * MiB,
};

/** The canned upstream, remembering every request that reached it (method, URL, headers). */
function recordingUpstream(): { upstream: Upstream; seen: { method: string; url: string; headers: Headers }[] } {
  const seen: { method: string; url: string; headers: Headers }[] = [];
  return {
    seen,
    upstream: async (request) => {
      seen.push({ method: request.method, url: request.url, headers: new Headers(request.headers) });
      return serveCanned(request);
    },
  };
}

function setup(overrides: Partial<EgressPolicy> = {}, executionId = `exec_${crypto.randomUUID()}`) {
  const policy = { ...POLICY, ...overrides };
  const meter = new EgressMeter(executionId);
  const { upstream, seen } = recordingUpstream();
  const send = (url: string, init?: RequestInit) => egressFetch(new Request(url, init), { policy, meter, upstream });
  return { policy, meter, seen, send };
}

async function refusalOf(response: Response) {
  expect(response.status).toBe(403);
  const body = await response.json<{ error: { code: string; rule: string; host: string; message: string } }>();
  expect(body.error.code).toBe("SANDBOX_NETWORK_BLOCKED");
  expect(response.headers.get(EGRESS_REFUSAL_HEADER)).toBe(body.error.rule);
  return body.error;
}

/** Reads a body chunk by chunk; returns the chunk sizes and the error that ended it, if any. */
async function drain(body: ReadableStream<Uint8Array> | null) {
  const sizes: number[] = [];
  if (body === null) return { sizes, error: undefined };
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return { sizes, error: undefined };
      sizes.push(value.byteLength);
    }
  } catch (error) {
    return { sizes, error: error instanceof Error ? error.message : String(error) };
  }
}

function text(size: number): string {
  return "y".repeat(size);
}

describe("allowed requests", () => {
  it("passes a GET through and counts it", async () => {
    const { meter, seen, send } = setup();
    const response = await send("https://api.example.com/hello");
    expect(response.status).toBe(200);
    expect(await response.text()).toBe("hello from api.example.com");
    expect(seen.map((request) => request.url)).toEqual(["https://api.example.com/hello"]);
    expect(meter.report()).toEqual({
      requests: 1,
      bytesSent: 0,
      bytesReceived: "hello from api.example.com".length,
      refusedCount: 0,
      refusals: [],
    });
  });

  it("sends a POST body and the job's headers, but never its Host header", async () => {
    const { meter, send } = setup();
    const response = await send("https://a.example.net/echo", {
      method: "POST",
      body: "abc",
      headers: { "content-type": "text/plain", "x-job": "1", host: "internal.example.com" },
    });
    const echoed = await response.json<{ method: string; body: string; headers: Record<string, string> }>();
    expect(echoed.method).toBe("POST");
    expect(echoed.body).toBe("abc");
    expect(echoed.headers["x-job"]).toBe("1");
    expect(echoed.headers["content-type"]).toBe("text/plain");
    expect(echoed.headers.host).toBeUndefined();
    const received = JSON.stringify(echoed).length;
    expect(meter.report()).toMatchObject({ requests: 1, bytesSent: 3, bytesReceived: received });
  });

  it("streams a response chunk by chunk, counting every byte", async () => {
    const { meter, send } = setup();
    const response = await send("https://api.example.com/stream?chunks=8&size=1000");
    expect(response.headers.get("content-length")).toBeNull();
    const { sizes, error } = await drain(response.body);
    expect(error).toBeUndefined();
    expect(sizes.reduce((sum, size) => sum + size, 0)).toBe(8000);
    expect(sizes.length).toBeGreaterThanOrEqual(8);
    expect(meter.report()).toMatchObject({ requests: 1, bytesReceived: 8000, refusedCount: 0 });
  });

  it("answers bodiless statuses and HEAD without a body", async () => {
    const { meter, send } = setup();
    expect((await send("https://api.example.com/status?code=204")).status).toBe(204);
    // The canned upstream sends a body even to HEAD; the gateway never delivers one.
    const head = await send("https://api.example.com/hello", { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.body).toBeNull();
    expect(meter.report()).toMatchObject({ requests: 2, bytesReceived: 0 });
  });

  it("strips a refusal marker an upstream sends", async () => {
    const { meter, send } = setup();
    const response = await send("https://api.example.com/spoof");
    expect(response.status).toBe(200);
    expect(response.headers.get(EGRESS_REFUSAL_HEADER)).toBeNull();
    expect(await response.text()).toBe("not a refusal");
    expect(meter.report().refusedCount).toBe(0);
  });
});

describe("refused requests never reach the upstream", () => {
  it.each([
    ["https://evil.com/hello", "not_allowlisted", "evil.com"],
    ["https://evil.example.net/hello", "blocked_domain", "evil.example.net"],
    ["https://example.net/hello", "not_allowlisted", "example.net"],
    ["http://api.example.com@evil.com/hello", "not_allowlisted", "evil.com"],
    ["http://169.254.169.254/latest/meta-data/", "metadata_address", "169.254.169.254"],
    ["http://0x7f.1/", "private_address", "127.0.0.1"],
    ["http://[::ffff:10.0.0.1]/", "private_address", "[::ffff:a00:1]"],
    ["http://localhost/", "localhost", "localhost"],
    ["http://metadata.google.internal/", "metadata_host", "metadata.google.internal"],
    ["https://api.example.com:8443/", "port_not_allowed", "api.example.com"],
  ])("%s → %s", async (url, rule, host) => {
    const { meter, seen, send } = setup();
    const error = await refusalOf(await send(url));
    expect(error).toMatchObject({ rule, host });
    expect(seen).toHaveLength(0);
    expect(meter.report()).toMatchObject({ requests: 0, bytesSent: 0, bytesReceived: 0, refusedCount: 1 });
    expect(meter.report().refusals).toEqual([{ rule, host, message: error.message }]);
  });

  it("refuses tunnelling and tracing methods", async () => {
    const { seen, send } = setup();
    for (const method of ["CONNECT", "TRACE", "TRACK"]) {
      let response: Response;
      try {
        response = await send("https://api.example.com/echo", { method });
      } catch {
        // The runtime's Request constructor may refuse the method itself: equally never sent.
        continue;
      }
      expect((await refusalOf(response)).rule).toBe("method_not_allowed");
    }
    expect(seen).toHaveLength(0);
  });

  it("refuses every call once the job has ended (meter closed)", async () => {
    const { meter, seen, send } = setup();
    meter.close();
    expect((await refusalOf(await send("https://api.example.com/hello"))).rule).toBe("job_not_running");
    expect(seen).toHaveLength(0);
  });
});

describe("redirects are followed by the gateway, hop by hop", () => {
  it("follows an allowed redirect to another allowed host, counting each hop", async () => {
    const { meter, seen, send } = setup();
    const response = await send("https://api.example.com/redirect?to=https://cdn.example.net/hello");
    expect(response.status).toBe(200);
    expect(await response.text()).toBe("hello from cdn.example.net");
    expect(seen.map((request) => request.url)).toEqual([
      "https://api.example.com/redirect?to=https://cdn.example.net/hello",
      "https://cdn.example.net/hello",
    ]);
    // The redirect's own body ("moved") is discarded unread, so it is not counted.
    expect(meter.report()).toMatchObject({ requests: 2, bytesReceived: "hello from cdn.example.net".length });
  });

  it.each([
    ["http://169.254.169.254/latest/meta-data/iam/", "metadata_address", "169.254.169.254"],
    ["http://127.0.0.1:8080/admin", "private_address", "127.0.0.1"],
    ["http://2130706433/", "private_address", "127.0.0.1"],
    ["http://[::1]/", "private_address", "[::1]"],
    ["http://localhost/", "localhost", "localhost"],
    ["http://10.1.2.3/", "private_address", "10.1.2.3"],
    ["https://evil.com/", "not_allowlisted", "evil.com"],
    ["https://evil.example.net/", "blocked_domain", "evil.example.net"],
    ["file:///etc/passwd", "scheme_not_allowed", ""],
  ])("refuses a redirect from an allowed host to %s", async (target, rule, host) => {
    const { meter, seen, send } = setup();
    const error = await refusalOf(await send(`https://api.example.com/redirect?to=${encodeURIComponent(target)}`));
    expect(error).toMatchObject({ rule, host });
    expect(error.message).toMatch(/^redirect from api\.example\.com refused: /);
    expect(seen).toHaveLength(1);
    expect(meter.report()).toMatchObject({ requests: 1, refusedCount: 1 });
  });

  it(`follows ${MAX_REDIRECT_HOPS} hops and refuses the next`, async () => {
    const within = setup();
    const response = await within.send(`https://api.example.com/chain?n=${MAX_REDIRECT_HOPS}`);
    expect(await response.text()).toBe("end");
    expect(within.meter.report()).toMatchObject({ requests: MAX_REDIRECT_HOPS + 1, refusedCount: 0 });

    const beyond = setup();
    const error = await refusalOf(await beyond.send(`https://api.example.com/chain?n=${MAX_REDIRECT_HOPS + 1}`));
    expect(error).toMatchObject({ rule: "redirect_limit", host: "api.example.com" });
    expect(beyond.seen).toHaveLength(MAX_REDIRECT_HOPS + 1);
    expect(beyond.meter.report()).toMatchObject({ requests: MAX_REDIRECT_HOPS + 1, refusedCount: 1 });
  });

  it("turns a POST into a GET without body on 303 (and 302), but resends it on 307", async () => {
    const see303 = setup();
    const after303 = await see303.send("https://api.example.com/redirect?status=303&to=/echo", {
      method: "POST",
      body: "abcd",
      headers: { "content-type": "text/plain" },
    });
    const echoed303 = await after303.json<{ method: string; body: string | null; headers: Record<string, string> }>();
    expect(echoed303).toMatchObject({ method: "GET", body: null });
    expect(echoed303.headers["content-type"]).toBeUndefined();
    expect(see303.meter.report()).toMatchObject({ requests: 2, bytesSent: 4 });

    const see307 = setup();
    const after307 = await see307.send("https://api.example.com/redirect?status=307&to=/echo", {
      method: "POST",
      body: "abcd",
    });
    expect(await after307.json()).toMatchObject({ method: "POST", body: "abcd" });
    // Sent twice: once to the redirecting URL, once to its target.
    expect(see307.meter.report()).toMatchObject({ requests: 2, bytesSent: 8 });
  });

  it("drops credentials when a redirect leaves the origin, keeps them within it", async () => {
    const headers = { authorization: "Bearer job-secret", cookie: "a=1", "x-keep": "1" };
    const same = setup();
    const sameOrigin = await same.send("https://api.example.com/redirect?to=/echo", { headers });
    expect((await sameOrigin.json<{ headers: Record<string, string> }>()).headers).toMatchObject(headers);

    const cross = setup();
    const crossOrigin = await cross.send(`https://api.example.com/redirect?to=https://cdn.example.net/echo`, {
      headers,
    });
    const seenHeaders = (await crossOrigin.json<{ headers: Record<string, string> }>()).headers;
    expect(seenHeaders.authorization).toBeUndefined();
    expect(seenHeaders.cookie).toBeUndefined();
    expect(seenHeaders["x-keep"]).toBe("1");
  });

  it("hands the redirect itself to a job that asked for redirect: manual", async () => {
    const { meter, seen, send } = setup();
    const response = await send("https://api.example.com/redirect?to=http://127.0.0.1/", { redirect: "manual" });
    expect(response.status).toBe(302);
    expect(response.headers.get("location")).toBe("http://127.0.0.1/");
    expect(seen).toHaveLength(1);
    expect(meter.report()).toMatchObject({ requests: 1, refusedCount: 0 });
    // Following it is a new request, checked like any other.
    expect((await refusalOf(await send("http://127.0.0.1/"))).rule).toBe("private_address");
  });
});

describe("request budget", () => {
  it("allows exactly maxRequests, then refuses", async () => {
    const { meter, seen, send } = setup({ maxRequests: 3 });
    for (let i = 0; i < 3; i++) expect((await send("https://api.example.com/hello")).status).toBe(200);
    const error = await refusalOf(await send("https://api.example.com/hello"));
    expect(error).toMatchObject({ rule: "request_budget", host: "api.example.com" });
    expect(seen).toHaveLength(3);
    expect(meter.report()).toMatchObject({ requests: 3, refusedCount: 1 });
  });

  it("counts redirect hops against it", async () => {
    const { meter, seen, send } = setup({ maxRequests: 2 });
    const error = await refusalOf(await send("https://api.example.com/chain?n=3"));
    expect(error.rule).toBe("request_budget");
    expect(seen).toHaveLength(2);
    expect(meter.report().requests).toBe(2);
  });

  it("holds under concurrent requests", async () => {
    const { meter, seen, send } = setup({ maxRequests: 5 });
    const responses = await Promise.all(Array.from({ length: 12 }, () => send("https://api.example.com/hello")));
    expect(responses.filter((response) => response.status === 200)).toHaveLength(5);
    expect(responses.filter((response) => response.status === 403)).toHaveLength(7);
    expect(seen).toHaveLength(5);
    expect(meter.report()).toMatchObject({ requests: 5, refusedCount: 7 });
  });
});

describe("byte budget (request and response bodies together)", () => {
  it("cuts a streamed response exactly at the budget, delivering what fits, then errors", async () => {
    const { meter, send } = setup({ maxBytes: 2500 });
    const response = await send("https://api.example.com/stream?chunks=5&size=1000");
    expect(response.status).toBe(200);
    const { sizes, error } = await drain(response.body);
    expect(sizes.reduce((sum, size) => sum + size, 0)).toBe(2500);
    expect(sizes.at(-1)).toBe(500);
    expect(error).toMatch(/SANDBOX_NETWORK_BLOCKED: the job used all 2500 bytes/);
    expect(meter.report()).toEqual({
      requests: 1,
      bytesSent: 0,
      bytesReceived: 2500,
      refusedCount: 1,
      refusals: [
        { rule: "byte_budget", host: "api.example.com", message: "the job used all 2500 bytes of its network budget" },
      ],
    });
  });

  it("lets a job use exactly its budget, then cuts the next body at its first byte", async () => {
    const { meter, send } = setup({ maxBytes: 10 });
    const exact = await send("https://api.example.com/bytes?n=6", { method: "POST", body: "abcd" });
    expect(await exact.text()).toBe("xxxxxx");
    expect(meter.report()).toMatchObject({ bytesSent: 4, bytesReceived: 6, refusedCount: 0 });

    // A bodiless answer still fits in an exhausted budget.
    expect((await send("https://api.example.com/status?code=204")).status).toBe(204);
    const over = await send("https://api.example.com/bytes?n=1");
    const { sizes, error } = await drain(over.body);
    expect(sizes).toEqual([]);
    expect(error).toMatch(/SANDBOX_NETWORK_BLOCKED/);
    expect(meter.report()).toMatchObject({ requests: 3, bytesSent: 4, bytesReceived: 6, refusedCount: 1 });
  });

  it("refuses a held request body that does not fit, without sending anything", async () => {
    const { meter, seen, send } = setup({ maxBytes: 10 });
    const error = await refusalOf(await send("https://api.example.com/echo", { method: "POST", body: text(11) }));
    expect(error).toMatchObject({ rule: "byte_budget", host: "api.example.com" });
    expect(seen).toHaveLength(0);
    expect(meter.report()).toMatchObject({ requests: 0, bytesSent: 0, bytesReceived: 0, refusedCount: 1 });
  });

  it("cuts a large streamed request body exactly at the budget", async () => {
    const budget = MAX_REPLAYABLE_BODY_BYTES + 512 * KiB;
    const { meter, seen, send } = setup({ maxBytes: budget });
    const body = new Blob([new Uint8Array(2 * MiB)]).stream();
    const error = await refusalOf(await send("https://api.example.com/echo", { method: "POST", body }));
    expect(error.rule).toBe("byte_budget");
    expect(seen).toHaveLength(1);
    expect(meter.report()).toMatchObject({ requests: 1, bytesSent: budget, bytesReceived: 0, refusedCount: 1 });
  });

  it("sends a large request body as a stream when it fits", async () => {
    const { meter, send } = setup({ maxBytes: 4 * MiB });
    const size = MAX_REPLAYABLE_BODY_BYTES + 100 * KiB;
    const response = await send("https://api.example.com/echo", { method: "POST", body: text(size) });
    const echoed = await response.json<{ body: string }>();
    expect(echoed.body.length).toBe(size);
    expect(meter.report()).toMatchObject({ requests: 1, bytesSent: size, refusedCount: 0 });
  });

  it("fails (like fetch) a 307 that would need a streamed body again", async () => {
    const { meter, send } = setup({ maxBytes: 4 * MiB });
    const body = text(MAX_REPLAYABLE_BODY_BYTES + 1);
    await expect(
      send("https://api.example.com/redirect?status=307&to=/echo", { method: "POST", body }),
    ).rejects.toThrow(/cannot follow a 307 redirect/);
    expect(meter.report()).toMatchObject({ requests: 1, refusedCount: 0 });
  });

  it("holds at most MAX_HELD_BODY_BYTES_PER_JOB of request bodies at once, and gives them back", async () => {
    const meter = new EgressMeter(`exec_${crypto.randomUUID()}`);
    const policy = { ...POLICY, maxBytes: 20 * MiB };
    const heldSeen: number[] = [];
    let open: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const upstream: Upstream = async (request) => {
      heldSeen.push(meter.held);
      await gate;
      return serveCanned(request);
    };
    const uploads = Array.from({ length: 6 }, () =>
      egressFetch(
        new Request("https://api.example.com/echo", {
          method: "POST",
          body: text(MAX_REPLAYABLE_BODY_BYTES),
        }),
        { policy, meter, upstream },
      ),
    );
    await vi.waitFor(() => expect(heldSeen).toHaveLength(6));
    // Several bodies were held at once, never more than the allowance: the rest went on as streams.
    expect(Math.max(...heldSeen)).toBeGreaterThan(MAX_REPLAYABLE_BODY_BYTES);
    expect(Math.max(...heldSeen)).toBeLessThanOrEqual(MAX_HELD_BODY_BYTES_PER_JOB);
    open();
    const echoed = await Promise.all(
      uploads.map(async (upload) => (await (await upload).json<{ body: string }>()).body),
    );
    expect(echoed.every((body) => body.length === MAX_REPLAYABLE_BODY_BYTES)).toBe(true);
    expect(meter.held).toBe(0);
    expect(meter.report()).toMatchObject({ requests: 6, bytesSent: 6 * MAX_REPLAYABLE_BODY_BYTES });
  });

  it("shares one budget across concurrent responses", async () => {
    const { meter, send } = setup({ maxBytes: 3000 });
    const responses = await Promise.all(
      Array.from({ length: 4 }, () => send("https://api.example.com/stream?chunks=2&size=1000")),
    );
    const drained = await Promise.all(responses.map((response) => drain(response.body)));
    const delivered = drained.flatMap((result) => result.sizes).reduce((sum, size) => sum + size, 0);
    expect(delivered).toBe(3000);
    expect(drained.filter((result) => result.error !== undefined).length).toBeGreaterThan(0);
    expect(meter.report()).toMatchObject({ requests: 4, bytesReceived: 3000 });
  });
});

describe("the entrypoint's wrapper (gatewayFetch / gatewayConnect)", () => {
  const upstreamEnv = { EGRESS_TEST_UPSTREAM: { fetch: (request: Request) => serveCanned(request) } };

  it("finds the job's meter by execution id and uses the test upstream from its env", async () => {
    const meter = new EgressMeter("exec_gateway_wrapper");
    const deactivate = activateEgressMeter(meter);
    try {
      const props = { executionId: "exec_gateway_wrapper", policy: POLICY };
      const response = await gatewayFetch(new Request("https://api.example.com/hello"), props, upstreamEnv);
      expect(await response.text()).toBe("hello from api.example.com");
      const refused = await gatewayFetch(new Request("http://10.0.0.1/"), props, upstreamEnv);
      expect((await refusalOf(refused)).rule).toBe("private_address");
      gatewayConnect(props);
      expect(meter.report()).toMatchObject({
        requests: 1,
        refusedCount: 2,
        refusals: [{ rule: "private_address" }, { rule: "socket_not_allowed" }],
      });
    } finally {
      deactivate();
    }
    expect(meter.closed).toBe(true);
  });

  it("refuses a job that is not running and a policy that does not parse", async () => {
    const missing = await gatewayFetch(
      new Request("https://api.example.com/hello"),
      { executionId: "exec_nobody", policy: POLICY },
      upstreamEnv,
    );
    expect((await refusalOf(missing)).rule).toBe("job_not_running");

    const meter = new EgressMeter("exec_bad_policy");
    const deactivate = activateEgressMeter(meter);
    try {
      const badPolicy = { ...POLICY, maxRequests: -1 };
      const response = await gatewayFetch(
        new Request("https://api.example.com/hello"),
        { executionId: "exec_bad_policy", policy: badPolicy },
        upstreamEnv,
      );
      expect((await refusalOf(response)).rule).toBe("network_disabled");
      expect(meter.report().requests).toBe(0);
    } finally {
      deactivate();
    }
  });

  it("aborts a request still in flight when the job ends", async () => {
    const meter = new EgressMeter("exec_abort");
    const deactivate = activateEgressMeter(meter);
    let sawAbort = false;
    let reached: () => void = () => undefined;
    const upstreamReached = new Promise<void>((resolve) => {
      reached = resolve;
    });
    const hanging: Upstream = (request) =>
      new Promise((_, reject) => {
        request.signal.addEventListener("abort", () => {
          sawAbort = true;
          reject(new Error("aborted"));
        });
        reached();
      });
    const pending = egressFetch(new Request("https://api.example.com/slow"), {
      policy: POLICY,
      meter,
      upstream: hanging,
    });
    await upstreamReached;
    deactivate();
    await expect(pending).rejects.toThrow("aborted");
    expect(sawAbort).toBe(true);
  });
});

describe("runWithEgress (the runner's wrapper)", () => {
  const policy: EgressPolicy = { ...POLICY, maxRequests: 2 };

  it("gives a job without network no outbound and no report", async () => {
    const reply = await runWithEgress(
      "exec_offline",
      null,
      () => {
        throw new Error("no gateway for a job without network");
      },
      async (outbound) => ({ ok: true, outbound }),
    );
    expect(reply).toEqual({ ok: true, outbound: null });
  });

  it("activates the meter for the run, passes the props, reports and closes it after", async () => {
    const executionId = `exec_${crypto.randomUUID()}`;
    let propsSeen: EgressGatewayProps | undefined;
    const gateway: GatewayFactory = (options) => {
      propsSeen = options.props;
      // The job's fetches, as the real entrypoint would answer them.
      return {
        fetch: (input: RequestInfo | URL) =>
          gatewayFetch(new Request(input), options.props, {
            EGRESS_TEST_UPSTREAM: { fetch: (request: Request) => serveCanned(request) },
          }),
      } as unknown as Fetcher;
    };
    const reply = await runWithEgress(executionId, policy, gateway, async (outbound) => {
      const statuses: number[] = [];
      for (const url of ["https://api.example.com/hello", "https://evil.com/", "https://api.example.com/hello"]) {
        const response = await (outbound as Fetcher).fetch(url);
        await response.arrayBuffer();
        statuses.push(response.status);
      }
      return { ok: true, statuses };
    });
    expect(propsSeen).toEqual({ executionId, policy });
    expect(reply).toMatchObject({
      ok: true,
      statuses: [200, 403, 200],
      egress: { requests: 2, bytesSent: 0, bytesReceived: 2 * "hello from api.example.com".length, refusedCount: 1 },
    });
    // After the run the job's gateway answers nothing.
    const late = await gatewayFetch(new Request("https://api.example.com/hello"), { executionId, policy }, {});
    expect((await refusalOf(late)).rule).toBe("job_not_running");
  });
});
