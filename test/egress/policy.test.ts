/**
 * The egress policy: the request schema, its resolution against a cordon, and `checkUrl` with every
 * host class (IP literals in each encoding, localhost, metadata, internal names), IDN, case, trailing
 * dots, ports and userinfo tricks. Table-driven: one row per URL.
 */
import { describe, expect, it } from "vitest";
import {
  ALLOWED_PORTS,
  MAX_NETWORK_BYTES,
  MAX_NETWORK_REQUESTS,
  NetworkPolicy,
  checkUrl,
  classifyHost,
  matchesDomain,
  parseDomainPattern,
  parseIPv4,
  parseIPv6,
  resolveEgressPolicy,
  type DomainLists,
} from "../../src/egress/policy";

const MiB = 1024 * 1024;

const LISTS: DomainLists = {
  allowedDomains: ["api.example.com", "*.example.net", "xn--bcher-kva.de", "example.org"],
  blockedDomains: ["evil.example.net", "*.bad.example.net"],
};

type Row = [url: string, expected: "ok" | string, host?: string];

function expectRows(rows: Row[], lists: DomainLists = LISTS) {
  for (const [url, expected, host] of rows) {
    const verdict = checkUrl(url, lists);
    const seen = verdict.ok ? "ok" : verdict.rule;
    expect(seen, `${url} → ${verdict.ok ? "ok" : verdict.message}`).toBe(expected);
    if (host !== undefined) expect(verdict.host, url).toBe(host);
  }
}

describe("checkUrl: allowed hosts", () => {
  it("matches exact names and wildcard subdomains, in any spelling the URL parser normalises", () => {
    expectRows([
      ["https://api.example.com/", "ok", "api.example.com"],
      ["http://api.example.com/v1/items?q=1#frag", "ok", "api.example.com"],
      ["HTTPS://API.EXAMPLE.COM/", "ok", "api.example.com"],
      ["https://Api.Example.Com./", "ok", "api.example.com"],
      ["https://api.example.com:443/", "ok"],
      ["http://api.example.com:80/", "ok"],
      ["https://api.example.com:80/", "ok"],
      ["https://%61pi.example.com/", "ok", "api.example.com"],
      ["https://api\u3002example\u3002com/", "ok", "api.example.com"],
      ["https://a.example.net/", "ok", "a.example.net"],
      ["https://a.b.c.example.net/", "ok", "a.b.c.example.net"],
      ["https://example.org/", "ok"],
      ["https://bücher.de/", "ok", "xn--bcher-kva.de"],
      ["https://BÜCHER.DE./", "ok", "xn--bcher-kva.de"],
      ["https://xn--bcher-kva.de/", "ok", "xn--bcher-kva.de"],
      // An exact block entry does not reach below itself (the allow wildcard still applies).
      ["https://x.evil.example.net/", "ok"],
    ]);
  });
});

describe("checkUrl: names not on the lists", () => {
  it("refuses apexes of wildcards, deeper names of exact entries, look-alikes and suffix tricks", () => {
    expectRows([
      ["https://example.net/", "not_allowlisted", "example.net"],
      ["https://www.api.example.com/", "not_allowlisted"],
      ["https://www.example.org/", "not_allowlisted"],
      ["https://example.com/", "not_allowlisted"],
      ["https://fooexample.net/", "not_allowlisted"],
      ["https://api.example.com.evil.com/", "not_allowlisted", "api.example.com.evil.com"],
      ["https://api-example.com/", "not_allowlisted"],
      ["https://xn--pi-7ld.example.com/", "not_allowlisted"],
      // Cyrillic "а" in "аpi": a homograph is another name after punycode.
      ["https://\u0430pi.example.com/", "not_allowlisted"],
      ["https://bucher.de/", "not_allowlisted"],
    ]);
  });

  it("lets a block win over an allow, exact and wildcard", () => {
    expectRows([
      ["https://evil.example.net/", "blocked_domain", "evil.example.net"],
      ["https://EVIL.example.net./", "blocked_domain", "evil.example.net"],
      ["https://a.bad.example.net/", "blocked_domain"],
      ["https://a.b.bad.example.net/", "blocked_domain"],
      // The apex of a blocked wildcard is not blocked (same rule as for allows), but allowed by *.example.net.
      ["https://bad.example.net/", "ok"],
    ]);
  });
});

describe("checkUrl: userinfo, fragments and backslashes cannot smuggle a host", () => {
  it("judges the host the URL really names", () => {
    expectRows([
      ["http://api.example.com@evil.com/", "not_allowlisted", "evil.com"],
      ["http://api.example.com:443@evil.com/", "not_allowlisted", "evil.com"],
      ["http://api.example.com%40@evil.com/", "not_allowlisted", "evil.com"],
      ["http://evil.com\\@api.example.com/", "not_allowlisted", "evil.com"],
      ["http://evil.com#@api.example.com/", "not_allowlisted", "evil.com"],
      ["http://evil.com?@api.example.com/", "not_allowlisted", "evil.com"],
      ["http://evil.com/\\api.example.com/", "not_allowlisted", "evil.com"],
      ["http://api.example.com@169.254.169.254/", "metadata_address", "169.254.169.254"],
      ["http://api.example.com@localhost/", "localhost", "localhost"],
    ]);
  });

  it("refuses credentials even for an allowed host", () => {
    expectRows([
      ["https://user:secret@api.example.com/", "credentials_in_url", "api.example.com"],
      ["https://user@api.example.com/", "credentials_in_url"],
      ["https://:secret@api.example.com/", "credentials_in_url"],
    ]);
  });
});

describe("checkUrl: schemes and ports", () => {
  it("allows http and https only", () => {
    expectRows([
      ["ftp://api.example.com/", "scheme_not_allowed"],
      ["ws://api.example.com/", "scheme_not_allowed"],
      ["wss://api.example.com/", "scheme_not_allowed"],
      ["file:///etc/passwd", "scheme_not_allowed"],
      ["data:text/plain,hi", "scheme_not_allowed"],
      ["javascript:alert(1)", "scheme_not_allowed"],
      ["blob:https://api.example.com/uuid", "scheme_not_allowed"],
      ["gopher://api.example.com:70/", "scheme_not_allowed"],
      ["not a url", "invalid_url"],
      ["//api.example.com/", "invalid_url"],
      ["http://", "invalid_url"],
      ["http://exa mple.com/", "invalid_url"],
    ]);
  });

  it(`allows ports ${ALLOWED_PORTS.join(" and ")} only`, () => {
    expectRows([
      ["https://api.example.com:8443/", "port_not_allowed"],
      ["http://api.example.com:8080/", "port_not_allowed"],
      ["http://api.example.com:22/", "port_not_allowed"],
      ["http://api.example.com:6379/", "port_not_allowed"],
      ["https://api.example.com:0443/", "ok"],
      ["http://api.example.com:443/", "ok"],
      ["http://api.example.com:99999/", "invalid_url"],
    ]);
  });
});

describe("checkUrl: IP literals are refused whatever the lists say", () => {
  it("catches loopback in every IPv4 encoding", () => {
    expectRows([
      ["http://127.0.0.1/", "private_address", "127.0.0.1"],
      ["http://127.0.0.1./", "private_address", "127.0.0.1"],
      ["http://2130706433/", "private_address", "127.0.0.1"],
      ["http://0x7f000001/", "private_address", "127.0.0.1"],
      ["http://0X7F000001/", "private_address", "127.0.0.1"],
      ["http://017700000001/", "private_address", "127.0.0.1"],
      ["http://0177.0.0.1/", "private_address", "127.0.0.1"],
      ["http://0x7f.0.0.1/", "private_address", "127.0.0.1"],
      ["http://0x7f.0x0.0x0.0x1/", "private_address", "127.0.0.1"],
      ["http://127.1/", "private_address", "127.0.0.1"],
      ["http://127.0.1/", "private_address", "127.0.0.1"],
      ["http://0x7f.1/", "private_address", "127.0.0.1"],
      ["http://127.000.000.001/", "private_address", "127.0.0.1"],
      ["http://%31%32%37.0.0.1/", "private_address", "127.0.0.1"],
      ["http://0/", "private_address", "0.0.0.0"],
      ["http://0.0.0.0/", "private_address", "0.0.0.0"],
    ]);
  });

  it("names private, link-local, CGNAT, metadata and other special ranges", () => {
    expectRows([
      ["http://10.0.0.1/", "private_address"],
      ["http://10.255.255.255/", "private_address"],
      ["http://172.16.0.1/", "private_address"],
      ["http://172.31.255.254/", "private_address"],
      ["http://192.168.1.1/", "private_address"],
      ["http://100.64.0.1/", "private_address"],
      ["http://100.127.255.255/", "private_address"],
      ["http://169.254.1.1/", "private_address"],
      ["http://192.0.0.8/", "private_address"],
      ["http://198.18.0.1/", "private_address"],
      ["http://224.0.0.1/", "private_address"],
      ["http://255.255.255.255/", "private_address"],
      ["http://169.254.169.254/latest/meta-data/", "metadata_address", "169.254.169.254"],
      ["http://0xa9fea9fe/", "metadata_address", "169.254.169.254"],
      ["http://2852039166/", "metadata_address", "169.254.169.254"],
      ["http://0251.0376.0251.0376/", "metadata_address", "169.254.169.254"],
      ["http://169.254.170.2/v2/credentials", "metadata_address"],
      ["http://100.100.100.200/", "metadata_address"],
      ["http://168.63.129.16/", "metadata_address"],
      // Public addresses are refused too: only listed names are reachable.
      ["http://8.8.8.8/", "ip_literal", "8.8.8.8"],
      ["http://1.1.1.1/", "ip_literal"],
      ["http://172.32.0.1/", "ip_literal"],
      ["http://100.128.0.1/", "ip_literal"],
      ["http://11.0.0.1/", "ip_literal"],
    ]);
  });

  it("catches IPv6 literals, including IPv4-mapped, NAT64 and 6to4 forms of private addresses", () => {
    expectRows([
      ["http://[::1]/", "private_address", "[::1]"],
      ["http://[0:0:0:0:0:0:0:1]/", "private_address", "[::1]"],
      ["http://[::]/", "private_address"],
      ["http://[::ffff:127.0.0.1]/", "private_address", "[::ffff:7f00:1]"],
      ["http://[::ffff:7f00:1]/", "private_address"],
      ["http://[0:0:0:0:0:ffff:169.254.169.254]/", "metadata_address"],
      ["http://[::ffff:a9fe:a9fe]/", "metadata_address"],
      ["http://[::ffff:8.8.8.8]/", "ip_literal"],
      ["http://[::127.0.0.1]/", "private_address"],
      ["http://[64:ff9b::10.0.0.1]/", "private_address"],
      ["http://[64:ff9b::a9fe:a9fe]/", "metadata_address"],
      ["http://[2002:7f00:1::]/", "private_address"],
      ["http://[2002:a9fe:a9fe::1]/", "metadata_address"],
      ["http://[fd00:ec2::254]/", "metadata_address"],
      ["http://[fe80::1]/", "private_address"],
      ["http://[febf::1]/", "private_address"],
      ["http://[fc00::1]/", "private_address"],
      ["http://[fd12:3456::1]/", "private_address"],
      ["http://[fec0::1]/", "private_address"],
      ["http://[ff02::1]/", "private_address"],
      ["http://[2001:db8::1]/", "private_address"],
      ["http://[2001::1]/", "private_address"],
      ["http://[100::1]/", "private_address"],
      ["http://[2606:4700:4700::1111]/", "ip_literal"],
      ["http://[fe80::1%25eth0]/", "invalid_url"],
    ]);
  });

  it("still refuses them when a list names them (lists bypassing the schema)", () => {
    const careless: DomainLists = {
      allowedDomains: ["127.0.0.1", "localhost", "*.localhost", "metadata.google.internal", "printer.local", "[::1]"],
      blockedDomains: [],
    };
    expectRows(
      [
        ["http://127.0.0.1/", "private_address"],
        ["http://localhost/", "localhost"],
        ["http://app.localhost/", "localhost"],
        ["http://metadata.google.internal/", "metadata_host"],
        ["http://printer.local/", "internal_name"],
        ["http://[::1]/", "private_address"],
      ],
      careless,
    );
  });
});

describe("checkUrl: local and internal names", () => {
  it("refuses localhost, metadata services and names that only resolve inside a network", () => {
    expectRows([
      ["http://localhost/", "localhost", "localhost"],
      ["http://LOCALHOST./", "localhost", "localhost"],
      ["http://localhost:80/", "localhost"],
      ["http://app.localhost/", "localhost"],
      ["http://a.b.localhost./", "localhost"],
      ["http://metadata.google.internal/computeMetadata/v1/", "metadata_host"],
      ["http://METADATA.GOOGLE.INTERNAL./", "metadata_host"],
      ["http://metadata/", "metadata_host"],
      ["http://metadata.goog/", "metadata_host"],
      ["http://instance-data/", "metadata_host"],
      ["http://instance-data.ec2.internal/", "metadata_host"],
      ["http://intranet/", "internal_name"],
      ["http://db.internal/", "internal_name"],
      ["http://printer.local/", "internal_name"],
      ["http://router.home.arpa/", "internal_name"],
      ["http://1.0.0.127.in-addr.arpa/", "internal_name"],
      ["http://kubernetes.default.svc/", "metadata_host"],
      ["http://api.default.svc.cluster.local/", "internal_name"],
      ["http://service.test/", "internal_name"],
      ["http://site.example/", "internal_name"],
      ["http://abc.onion/", "internal_name"],
      ["http://under_score.example.com/", "invalid_host"],
    ]);
  });
});

describe("classifyHost on raw hosts (not through the URL parser)", () => {
  it.each([
    ["0x7f.1", "private_address"],
    ["2130706433", "private_address"],
    ["0177.0.0.01", "private_address"],
    ["127.0.0.1.", "private_address"],
    ["0x7F.0.0.1", "private_address"],
    ["[::ffff:127.0.0.1]", "private_address"],
    ["::ffff:a9fe:a9fe", "metadata_address"],
    ["[FD00:EC2::254]", "metadata_address"],
    ["1.2.3.4.5", "invalid_host"],
    ["999.1.1.1", "invalid_host"],
    ["0x1g.0.0.1", "invalid_host"],
    ["99999999999", "invalid_host"],
    ["[1::2::3]", "invalid_host"],
    ["Localhost", "localhost"],
    ["example.com", undefined],
    ["a-b.example.com.", undefined],
  ])("%s → %s", (host, rule) => {
    expect(classifyHost(host)?.rule).toBe(rule);
  });
});

describe("address parsers", () => {
  it.each([
    ["127.0.0.1", 0x7f000001],
    ["2130706433", 0x7f000001],
    ["0x7f.1", 0x7f000001],
    ["0177.1", 0x7f000001],
    ["127.1.", 0x7f000001],
    ["0x", 0],
    ["1.2.3", 0x01020003],
    ["1.65535", 0x0100ffff],
    ["255.255.255.255", 0xffffffff],
    ["4294967296", null],
    ["256.0.0.1", null],
    ["1.2.65536", null],
    ["08.0.0.1", null],
    ["1.2.3.4.5", null],
    ["example.com", null],
    ["", null],
  ])("IPv4 %s → %s", (text, expected) => {
    expect(parseIPv4(text)).toBe(expected);
  });

  it.each([
    ["::", [0, 0, 0, 0, 0, 0, 0, 0]],
    ["::1", [0, 0, 0, 0, 0, 0, 0, 1]],
    ["1::", [1, 0, 0, 0, 0, 0, 0, 0]],
    ["1:2:3:4:5:6:7:8", [1, 2, 3, 4, 5, 6, 7, 8]],
    ["1:2:3:4:5:6:1.2.3.4", [1, 2, 3, 4, 5, 6, 0x102, 0x304]],
    ["::ffff:1.2.3.4", [0, 0, 0, 0, 0, 0xffff, 0x102, 0x304]],
    ["64:ff9b::10.0.0.1", [0x64, 0xff9b, 0, 0, 0, 0, 0xa00, 1]],
    ["fe80::1:2", [0xfe80, 0, 0, 0, 0, 0, 1, 2]],
    ["1:2:3:4:5:6:7:8:9", null],
    ["1::2::3", null],
    ["12345::", null],
    ["fe80::1%eth0", null],
    ["::1.2.3", null],
    ["::256.1.1.1", null],
    ["1:2:3:4:5:6:7", null],
    [":::", null],
  ])("IPv6 %s", (text, expected) => {
    expect(parseIPv6(text)).toEqual(expected);
  });
});

describe("domain patterns", () => {
  it.each([
    ["api.example.com", "api.example.com"],
    ["API.Example.COM", "api.example.com"],
    ["api.example.com.", "api.example.com"],
    ["bücher.de", "xn--bcher-kva.de"],
    ["xn--bcher-kva.de", "xn--bcher-kva.de"],
    ["*.example.com", "*.example.com"],
    ["*.Bücher.de", "*.xn--bcher-kva.de"],
    ["a-b.c-d.example", "a-b.c-d.example"],
  ])("%s normalises to %s", (raw, pattern) => {
    expect(parseDomainPattern(raw)).toEqual({ ok: true, pattern });
  });

  it.each([
    "https://api.example.com",
    "api.example.com:443",
    "api.example.com/path",
    "user@api.example.com",
    "api.example.com?x",
    "api example.com",
    "*",
    "*.com",
    "**.example.com",
    "a.*.example.com",
    "*example.com",
    "127.0.0.1",
    "0x7f.1",
    "2130706433",
    "[::1]",
    "::1",
    "-bad.example.com",
    "bad-.example.com",
    "a..b.com",
    ".example.com",
    "example.123",
    `${"a".repeat(64)}.com`,
    `${"a.".repeat(127)}com`,
    "under_score.com",
    "",
  ])("refuses %j", (raw) => {
    expect(parseDomainPattern(raw).ok).toBe(false);
  });

  it("matches exact entries exactly and wildcards below (never at) their apex", () => {
    const patterns = ["api.example.com", "*.example.net"];
    expect(matchesDomain("api.example.com", patterns)).toBe("api.example.com");
    expect(matchesDomain("x.api.example.com", patterns)).toBeUndefined();
    expect(matchesDomain("a.example.net", patterns)).toBe("*.example.net");
    expect(matchesDomain("a.b.example.net", patterns)).toBe("*.example.net");
    expect(matchesDomain("example.net", patterns)).toBeUndefined();
    expect(matchesDomain("badexample.net", patterns)).toBeUndefined();
  });
});

describe("NetworkPolicy (the request field)", () => {
  const valid = { enabled: true, allowedDomains: ["api.example.com"] };

  it("accepts a minimal policy and fills the defaults", () => {
    expect(NetworkPolicy.parse(valid)).toEqual({
      enabled: true,
      allowedDomains: ["api.example.com"],
      blockedDomains: [],
    });
    expect(NetworkPolicy.parse({})).toEqual({ enabled: false, allowedDomains: [], blockedDomains: [] });
  });

  it.each([
    ["enabled without domains", { enabled: true }],
    ["an unknown key", { ...valid, allowPrivate: true }],
    ["a URL as a domain", { ...valid, allowedDomains: ["https://api.example.com/"] }],
    ["an IP as a domain", { ...valid, allowedDomains: ["10.0.0.1"] }],
    ["localhost allowed", { ...valid, allowedDomains: ["localhost"] }],
    ["*.localhost allowed", { ...valid, allowedDomains: ["*.localhost"] }],
    ["a metadata name allowed", { ...valid, allowedDomains: ["metadata.google.internal"] }],
    ["an internal name allowed", { ...valid, allowedDomains: ["printer.local"] }],
    ["an internal wildcard allowed", { ...valid, allowedDomains: ["*.internal"] }],
    ["a single-label name allowed", { ...valid, allowedDomains: ["intranet"] }],
    ["a TLD wildcard", { ...valid, allowedDomains: ["*.com"] }],
    ["an invalid blocked entry", { ...valid, blockedDomains: ["evil.com:80"] }],
    ["51 allowed domains", { ...valid, allowedDomains: Array.from({ length: 51 }, (_, i) => `h${i}.example.com`) }],
    [
      "51 domains in both lists",
      {
        enabled: true,
        allowedDomains: Array.from({ length: 30 }, (_, i) => `a${i}.example.com`),
        blockedDomains: Array.from({ length: 21 }, (_, i) => `b${i}.example.com`),
      },
    ],
    ["maxRequests 0", { ...valid, maxRequests: 0 }],
    ["maxRequests above 1000", { ...valid, maxRequests: MAX_NETWORK_REQUESTS + 1 }],
    ["maxRequests not an integer", { ...valid, maxRequests: 1.5 }],
    ["maxBytes above 100 MiB", { ...valid, maxBytes: 100 * MiB + 1 }],
    ["maxBytes negative", { ...valid, maxBytes: -1 }],
    ["a non-boolean enabled", { ...valid, enabled: "yes" }],
  ])("refuses %s", (_label, input) => {
    expect(NetworkPolicy.safeParse(input).success).toBe(false);
  });

  it("accepts the bounds themselves and internal names in the block list", () => {
    const policy = {
      enabled: true,
      allowedDomains: Array.from({ length: 49 }, (_, i) => `h${i}.example.com`),
      blockedDomains: ["printer.local"],
      maxRequests: MAX_NETWORK_REQUESTS,
      maxBytes: MAX_NETWORK_BYTES,
    };
    expect(NetworkPolicy.safeParse(policy).success).toBe(true);
    expect(MAX_NETWORK_BYTES).toBe(100 * MiB);
  });
});

describe("resolveEgressPolicy", () => {
  const ceilings = { requests: { default: 20, max: 100 }, bytes: { default: MiB, max: 10 * MiB } };

  it("is null (no network) unless enabled", () => {
    expect(resolveEgressPolicy(undefined, ceilings)).toEqual({ ok: true, policy: null });
    expect(resolveEgressPolicy(NetworkPolicy.parse({ allowedDomains: ["a.example.com"] }), ceilings)).toEqual({
      ok: true,
      policy: null,
    });
  });

  it("refuses network at a level without any", () => {
    const none = { requests: { default: 0, max: 0 }, bytes: { default: 0, max: 0 } };
    expect(
      resolveEgressPolicy(NetworkPolicy.parse({ enabled: true, allowedDomains: ["a.example.com"] }), none),
    ).toEqual({ ok: false, rule: "network_disabled", message: "this trust level has no network access" });
  });

  it("normalises and deduplicates the lists, defaults and clamps the budgets", () => {
    const requested = NetworkPolicy.parse({
      enabled: true,
      allowedDomains: ["Bücher.DE.", "xn--bcher-kva.de", "*.Example.com"],
      blockedDomains: ["EVIL.example.com"],
      maxRequests: 500,
    });
    expect(resolveEgressPolicy(requested, ceilings)).toEqual({
      ok: true,
      policy: {
        allowedDomains: ["xn--bcher-kva.de", "*.example.com"],
        blockedDomains: ["evil.example.com"],
        maxRequests: 100,
        maxBytes: MiB,
      },
    });
  });
});
