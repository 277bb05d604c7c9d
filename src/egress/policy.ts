/**
 * Network egress policy of edge jobs: the request field (`limits.network`), its resolution against
 * the job's cordon, and the check of one URL against a resolved policy. Pure functions, no I/O: the
 * gateway (gateway.ts) applies them to every request and every redirect hop.
 *
 * Hosts are compared in the form the WHATWG URL parser gives them (lower case, IDN as punycode,
 * IPv4 in any encoding as dotted decimal, IPv6 compressed in brackets), with one trailing dot
 * removed, so that the allowlist and the request are read by the same parser the runtime uses to
 * route the request. See `checkUrl` for the order of the rules and INTEGRATION.md for the table.
 *
 * Domain patterns:
 *   - `api.example.com` matches that host only (not `www.api.example.com`, not `example.com`);
 *   - `*.example.com` matches every subdomain at any depth (`a.example.com`, `a.b.example.com`) but
 *     NOT `example.com` itself: list both to allow both;
 *   - the same matching applies to `blockedDomains`, and a blocked match wins over an allowed one.
 */
import { z } from "zod";

const KiB = 1024;
const MiB = 1024 * KiB;

/** Entries in `allowedDomains` and `blockedDomains` together. */
export const MAX_POLICY_DOMAINS = 50;
/** Ceiling of `maxRequests`, whatever the cordon says (each redirect hop is one request). */
export const MAX_NETWORK_REQUESTS = 1_000;
/** Ceiling of `maxBytes`, bytes of request and response bodies together. */
export const MAX_NETWORK_BYTES = 100 * MiB;
/** Redirects the gateway follows for one fetch before it refuses the chain. */
export const MAX_REDIRECT_HOPS = 5;
/** Longest DNS name, characters, without the trailing dot (RFC 1035). */
const MAX_HOSTNAME_CHARS = 253;
/** Ports a job may reach: the web's. Other ports of an allowlisted host stay closed. */
export const ALLOWED_PORTS: readonly number[] = [80, 443];

/**
 * Marks a response as the gateway's refusal (the isolate's fetch wrapper throws on it); the gateway
 * strips it from every upstream response so that no site can fake one.
 */
export const EGRESS_REFUSAL_HEADER = "cordon-egress-refusal";

/** Why a URL (or a request) was refused. Every refusal is SANDBOX_NETWORK_BLOCKED with one of these. */
export type EgressRule =
  | "invalid_url"
  | "scheme_not_allowed"
  | "invalid_host"
  | "ip_literal"
  | "private_address"
  | "metadata_address"
  | "localhost"
  | "metadata_host"
  | "internal_name"
  | "blocked_domain"
  | "not_allowlisted"
  | "port_not_allowed"
  | "credentials_in_url"
  // The rules below are the gateway's (a request, not a URL).
  | "method_not_allowed"
  | "socket_not_allowed"
  | "tls_server_name"
  | "request_budget"
  | "byte_budget"
  | "redirect_limit"
  | "network_disabled"
  | "job_not_running";

// ---------------------------------------------------------------------------------------------------
// Request schema

const DomainPattern = z
  .string()
  .min(1)
  .max(MAX_HOSTNAME_CHARS + 3)
  .superRefine((value, context) => {
    const parsed = parseDomainPattern(value);
    if (!parsed.ok) context.addIssue({ code: "custom", message: parsed.message });
  });

const AllowedDomainPattern = DomainPattern.superRefine((value, context) => {
  const parsed = parseDomainPattern(value);
  if (!parsed.ok) return;
  // An entry the gateway would refuse anyway is a mistake the caller should hear about now.
  const probe = parsed.pattern.startsWith("*.") ? `x.${parsed.pattern.slice(2)}` : parsed.pattern;
  const refused = classifyName(probe);
  if (refused) context.addIssue({ code: "custom", message: `"${value}" can never be reached: ${refused.message}` });
});

/**
 * `limits.network` of an execution request. Off unless `enabled`; when enabled, at least one allowed
 * domain. `maxRequests` and `maxBytes` are clamped to the cordon's maximum like every other limit.
 */
export const NetworkPolicy = z
  .object({
    enabled: z.boolean().default(false),
    /** Hosts the job may reach: `host.example.com` or `*.example.com` (subdomains, not the apex). */
    allowedDomains: z.array(AllowedDomainPattern).max(MAX_POLICY_DOMAINS).default([]),
    /** Hosts refused even when an allowed pattern matches them (same syntax). */
    blockedDomains: z.array(DomainPattern).max(MAX_POLICY_DOMAINS).default([]),
    /** Requests the job may send, redirect hops included. */
    maxRequests: z.number().int().min(1).max(MAX_NETWORK_REQUESTS).optional(),
    /** Bytes of request and response bodies together (headers are not counted). */
    maxBytes: z.number().int().min(1).max(MAX_NETWORK_BYTES).optional(),
  })
  .strict()
  .superRefine((policy, context) => {
    if (policy.allowedDomains.length + policy.blockedDomains.length > MAX_POLICY_DOMAINS) {
      context.addIssue({ code: "custom", message: `at most ${MAX_POLICY_DOMAINS} domains in both lists together` });
    }
    if (policy.enabled && policy.allowedDomains.length === 0) {
      context.addIssue({
        code: "custom",
        path: ["allowedDomains"],
        message: "network access needs at least one allowed domain",
      });
    }
  });
export type NetworkPolicy = z.infer<typeof NetworkPolicy>;

/**
 * The resolved policy a job runs with: normalised patterns and effective budgets. It travels as the
 * gateway's props and in the runner request, so it is plain data with a schema of its own.
 */
export const EgressPolicy = z.object({
  allowedDomains: z.array(z.string()).max(MAX_POLICY_DOMAINS),
  blockedDomains: z.array(z.string()).max(MAX_POLICY_DOMAINS),
  maxRequests: z.number().int().min(1).max(MAX_NETWORK_REQUESTS),
  maxBytes: z.number().int().min(1).max(MAX_NETWORK_BYTES),
});
export type EgressPolicy = z.infer<typeof EgressPolicy>;

export interface BudgetRange {
  default: number;
  max: number;
}

/** The cordon's say on network: a `max` of 0 means the level has no network at all. */
export interface NetworkCeilings {
  requests: BudgetRange;
  bytes: BudgetRange;
}

export type EgressResolution =
  { ok: true; policy: EgressPolicy | null } | { ok: false; rule: "network_disabled"; message: string };

/**
 * The effective policy of a job, or null for no network. A request that enables network at a level
 * without any is refused (not silently clamped to nothing): the job would fail at its first fetch.
 */
export function resolveEgressPolicy(requested: NetworkPolicy | undefined, ceilings: NetworkCeilings): EgressResolution {
  if (!requested?.enabled) return { ok: true, policy: null };
  if (ceilings.requests.max <= 0 || ceilings.bytes.max <= 0) {
    return { ok: false, rule: "network_disabled", message: "this trust level has no network access" };
  }
  const normalise = (patterns: readonly string[]) => [
    ...new Set(
      patterns.flatMap((raw) => {
        const parsed = parseDomainPattern(raw);
        return parsed.ok ? [parsed.pattern] : [];
      }),
    ),
  ];
  const clamp = (value: number | undefined, range: BudgetRange, ceiling: number) =>
    Math.max(1, Math.min(value ?? range.default, range.max, ceiling));
  return {
    ok: true,
    policy: {
      allowedDomains: normalise(requested.allowedDomains),
      blockedDomains: normalise(requested.blockedDomains),
      maxRequests: clamp(requested.maxRequests, ceilings.requests, MAX_NETWORK_REQUESTS),
      maxBytes: clamp(requested.maxBytes, ceilings.bytes, MAX_NETWORK_BYTES),
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// Domain patterns

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
/** Characters that make an entry something other than a bare host (URL, port, userinfo, path…). */
const NOT_A_HOST = /[\s/\\:@?#%[\]]/;

export type PatternParse = { ok: true; pattern: string } | { ok: false; message: string };

/**
 * Normalises a list entry through the URL parser (so `Bücher.DE.` becomes `xn--bcher-kva.de`, the
 * form requests are compared in) and checks it is a DNS name, or `*.` followed by one with at least
 * two labels (`*.com` would open a whole TLD).
 */
export function parseDomainPattern(raw: string): PatternParse {
  const wildcard = raw.startsWith("*.");
  const body = wildcard ? raw.slice(2) : raw;
  if (body.includes("*")) return { ok: false, message: `"${raw}": "*" is only allowed as a leading "*."` };
  if (NOT_A_HOST.test(body)) return { ok: false, message: `"${raw}" is not a host name (no scheme, port or path)` };
  let host: string;
  try {
    host = new URL(`http://${body}/`).hostname;
  } catch {
    return { ok: false, message: `"${raw}" is not a valid host name` };
  }
  host = stripTrailingDot(host);
  if (parseIPv4(host) !== null || host.startsWith("[")) {
    return { ok: false, message: `"${raw}" is an IP address; lists take host names only` };
  }
  if (!isDnsName(host)) return { ok: false, message: `"${raw}" is not a valid host name` };
  if (wildcard && host.split(".").length < 2) {
    return { ok: false, message: `"${raw}" is too broad: a wildcard needs at least two labels after "*."` };
  }
  return { ok: true, pattern: wildcard ? `*.${host}` : host };
}

/** Matches a normalised host against normalised patterns (see the module comment for the rules). */
export function matchesDomain(host: string, patterns: readonly string[]): string | undefined {
  return patterns.find((pattern) =>
    pattern.startsWith("*.") ? host.endsWith(pattern.slice(1)) && host.length > pattern.length - 1 : host === pattern,
  );
}

function stripTrailingDot(host: string): string {
  return host.endsWith(".") ? host.slice(0, -1) : host;
}

/** Letters, digits and inner hyphens; at most 253 characters; a top-level label that is not numeric. */
function isDnsName(host: string): boolean {
  if (host.length === 0 || host.length > MAX_HOSTNAME_CHARS) return false;
  const labels = host.split(".");
  const top = labels[labels.length - 1] ?? "";
  return labels.every((label) => LABEL.test(label)) && !/^[0-9]+$/.test(top);
}

// ---------------------------------------------------------------------------------------------------
// Names that never leave the sandbox

/** Cloud metadata services by name (their addresses are in METADATA_V4 / METADATA_V6). */
const METADATA_HOSTS = new Set([
  "metadata.google.internal",
  "metadata.goog",
  "metadata",
  "instance-data",
  "instance-data.ec2.internal",
  "metadata.azure.com",
  "metadata.tencentyun.com",
  "metadata.platformequinix.com",
  "kubernetes.default.svc",
]);

/**
 * Special-use and private-network suffixes (RFC 6761, 6762, 7686, 8375, 9476 and common internal
 * conventions): such names resolve only inside someone's network, never to the public internet.
 */
const INTERNAL_SUFFIXES = [
  "internal",
  "local",
  "localdomain",
  "home.arpa",
  "arpa",
  "lan",
  "home",
  "corp",
  "intranet",
  "private",
  "test",
  "invalid",
  "example",
  "onion",
  "alt",
  "svc",
  "cluster.local",
];

export interface HostRefusal {
  rule: EgressRule;
  message: string;
}

/** A DNS name that is refused whatever the lists say, or undefined for a public-looking name. */
function classifyName(host: string): HostRefusal | undefined {
  if (host === "localhost" || host.endsWith(".localhost")) {
    return { rule: "localhost", message: `${host} is the job's own machine` };
  }
  if (METADATA_HOSTS.has(host)) return { rule: "metadata_host", message: `${host} is a cloud metadata service` };
  if (!host.includes(".")) {
    return { rule: "internal_name", message: `${host} is a single-label name (resolved by local search domains)` };
  }
  const suffix = INTERNAL_SUFFIXES.find((name) => host === name || host.endsWith(`.${name}`));
  if (suffix) return { rule: "internal_name", message: `${host} is under .${suffix}, which is not a public domain` };
  return undefined;
}

// ---------------------------------------------------------------------------------------------------
// IP literals

/**
 * Parses an IPv4 host the way the WHATWG URL parser does: one to four parts, each decimal, octal
 * (leading 0) or hex (0x), the last filling the remaining bytes (`2130706433`, `0x7f.1`, `0177.0.0.1`
 * are all 127.0.0.1). Returns the address as an unsigned 32-bit number, or null if it is not one.
 */
export function parseIPv4(host: string): number | null {
  const parts = host.split(".");
  if (parts.length > 1 && parts[parts.length - 1] === "") parts.pop();
  if (parts.length === 0 || parts.length > 4) return null;
  const numbers: number[] = [];
  for (const part of parts) {
    const value = parseIPv4Number(part);
    if (value === null) return null;
    numbers.push(value);
  }
  const last = numbers.pop() ?? 0;
  if (numbers.some((value) => value > 255)) return null;
  if (last >= 256 ** (4 - numbers.length)) return null;
  let address = last;
  numbers.forEach((value, index) => {
    address += value * 256 ** (3 - index);
  });
  return address;
}

function parseIPv4Number(part: string): number | null {
  if (part === "") return null;
  let digits = part;
  let radix = 10;
  if (/^0[xX]/.test(part)) {
    digits = part.slice(2);
    radix = 16;
  } else if (part.length > 1 && part.startsWith("0")) {
    digits = part.slice(1);
    radix = 8;
  }
  if (digits === "") return 0;
  const valid = radix === 16 ? /^[0-9a-fA-F]+$/ : radix === 8 ? /^[0-7]+$/ : /^[0-9]+$/;
  if (!valid.test(digits)) return null;
  const value = parseInt(digits, radix);
  // Larger than any IPv4 address: the parser calls it a failure, and so do we (never a host name).
  return Number.isSafeInteger(value) ? value : Number.MAX_SAFE_INTEGER;
}

/** Parses an IPv6 address (no brackets, no zone), with an optional dotted IPv4 tail, into 8 groups. */
export function parseIPv6(text: string): number[] | null {
  if (text.includes("%")) return null;
  let tail: number[] = [];
  let head = text;
  const lastColon = text.lastIndexOf(":");
  if (text.slice(lastColon + 1).includes(".")) {
    const dotted = text.slice(lastColon + 1);
    if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(dotted)) return null;
    const bytes = dotted.split(".").map(Number);
    if (bytes.some((byte) => byte > 255)) return null;
    const [a = 0, b = 0, c = 0, d = 0] = bytes;
    tail = [(a << 8) | b, (c << 8) | d];
    head = text.slice(0, lastColon + 1);
    // "::1.2.3.4" leaves "::"; "64:ff9b::1.2.3.4" leaves "64:ff9b::"; "1:2:3:4:5:6:1.2.3.4" leaves "…6:".
    if (head.endsWith(":") && !head.endsWith("::")) head = head.slice(0, -1);
  }
  const halves = head.split("::");
  if (halves.length > 2) return null;
  const parse = (side: string | undefined): number[] | null => {
    if (side === undefined || side === "") return [];
    const groups = side.split(":");
    if (groups.some((group) => !/^[0-9a-fA-F]{1,4}$/.test(group))) return null;
    return groups.map((group) => parseInt(group, 16));
  };
  const left = parse(halves[0]);
  const right = parse(halves[1]);
  if (left === null || right === null) return null;
  const given = left.length + right.length + tail.length;
  if (halves.length === 2) {
    if (given > 7) return null;
    return [...left, ...new Array<number>(8 - given).fill(0), ...right, ...tail];
  }
  return given === 8 ? [...left, ...tail] : null;
}

interface V4Range {
  base: number;
  bits: number;
  name: string;
}

const v4 = (dotted: string, bits: number, name: string): V4Range => ({
  base: parseIPv4(dotted) ?? 0,
  bits,
  name,
});

/** Instance metadata endpoints (AWS, GCP, Azure, Oracle: .254; ECS: 170.2; Alibaba; Azure WireServer). */
const METADATA_V4 = new Set([
  "169.254.169.254",
  "169.254.170.2",
  "169.254.169.253",
  "100.100.100.200",
  "168.63.129.16",
]);

/** Addresses that are not the public internet (IANA special-purpose registry). */
const SPECIAL_V4: readonly V4Range[] = [
  v4("0.0.0.0", 8, "this network"),
  v4("10.0.0.0", 8, "private"),
  v4("100.64.0.0", 10, "carrier-grade NAT"),
  v4("127.0.0.0", 8, "loopback"),
  v4("169.254.0.0", 16, "link-local"),
  v4("172.16.0.0", 12, "private"),
  v4("192.0.0.0", 24, "IETF protocol assignments"),
  v4("192.0.2.0", 24, "documentation"),
  v4("192.88.99.0", 24, "6to4 relay anycast"),
  v4("192.168.0.0", 16, "private"),
  v4("198.18.0.0", 15, "benchmarking"),
  v4("198.51.100.0", 24, "documentation"),
  v4("203.0.113.0", 24, "documentation"),
  v4("224.0.0.0", 4, "multicast"),
  v4("240.0.0.0", 4, "reserved"),
];

function inV4Range(address: number, range: V4Range): boolean {
  const size = 2 ** (32 - range.bits);
  return Math.floor(address / size) === Math.floor(range.base / size);
}

export function formatIPv4(address: number): string {
  return [address >>> 24, (address >>> 16) & 255, (address >>> 8) & 255, address & 255].join(".");
}

/** Every IP literal is refused; this names the most specific reason. */
export function classifyIPv4(address: number): HostRefusal {
  const dotted = formatIPv4(address);
  if (METADATA_V4.has(dotted)) return { rule: "metadata_address", message: `${dotted} is a cloud metadata address` };
  const range = SPECIAL_V4.find((candidate) => inV4Range(address, candidate));
  if (range) return { rule: "private_address", message: `${dotted} is a ${range.name} address` };
  return { rule: "ip_literal", message: `${dotted} is an IP address; only listed host names are reachable` };
}

/** Every IP literal is refused; IPv6 forms that embed an IPv4 address are named by that address. */
export function classifyIPv6(groups: readonly number[]): HostRefusal {
  const g = (index: number) => groups[index] ?? 0;
  const text = groups.map((group) => group.toString(16)).join(":");
  const embedded = (high: number, low: number) => ((high << 16) >>> 0) + low;
  const zeros = (from: number, to: number) => groups.slice(from, to).every((group) => group === 0);
  const named = (name: string): HostRefusal => ({ rule: "private_address", message: `[${text}] is a ${name} address` });
  const viaV4 = (kind: string, address: number): HostRefusal => {
    const inner = classifyIPv4(address);
    return { rule: inner.rule, message: `[${text}] is ${kind} of ${formatIPv4(address)}: ${inner.message}` };
  };

  if (zeros(0, 8)) return named("unspecified");
  if (zeros(0, 7) && g(7) === 1) return named("loopback");
  if (zeros(0, 5) && g(5) === 0xffff) return viaV4("IPv4-mapped", embedded(g(6), g(7)));
  if (zeros(0, 6)) return viaV4("IPv4-compatible", embedded(g(6), g(7)));
  if (zeros(0, 4) && g(4) === 0xffff && g(5) === 0) return viaV4("IPv4-translated", embedded(g(6), g(7)));
  if (g(0) === 0x64 && g(1) === 0xff9b && zeros(2, 6)) return viaV4("NAT64", embedded(g(6), g(7)));
  if (g(0) === 0x64 && g(1) === 0xff9b && g(2) === 1) return named("local-use NAT64");
  if (g(0) === 0x2002) return viaV4("6to4", embedded(g(1), g(2)));
  if (g(0) === 0xfd00 && g(1) === 0x0ec2 && zeros(2, 7) && g(7) === 0x254) {
    return { rule: "metadata_address", message: `[${text}] is a cloud metadata address` };
  }
  if (g(0) === 0x2001 && g(1) === 0) return named("Teredo");
  if (g(0) === 0x2001 && g(1) === 0x0db8) return named("documentation");
  if (g(0) === 0x0100 && zeros(1, 4)) return named("discard-only");
  if ((g(0) & 0xfe00) === 0xfc00) return named("unique local");
  if ((g(0) & 0xffc0) === 0xfe80) return named("link-local");
  if ((g(0) & 0xffc0) === 0xfec0) return named("site-local");
  if ((g(0) & 0xff00) === 0xff00) return named("multicast");
  return { rule: "ip_literal", message: `[${text}] is an IP address; only listed host names are reachable` };
}

/**
 * The classes refused whatever the lists say: IP literals of any version and encoding, localhost,
 * metadata names, internal names. `host` is a URL hostname (IPv6 in brackets) or a bare host.
 */
export function classifyHost(rawHost: string): HostRefusal | undefined {
  const host = stripTrailingDot(rawHost.toLowerCase());
  if (host.startsWith("[") || host.includes(":")) {
    const groups = parseIPv6(host.replace(/^\[|\]$/g, ""));
    return groups ? classifyIPv6(groups) : { rule: "invalid_host", message: `${rawHost} is not a valid IPv6 address` };
  }
  const address = parseIPv4(host);
  if (address !== null) return classifyIPv4(address);
  if (!isDnsName(host)) return { rule: "invalid_host", message: `"${rawHost}" is not a valid host name` };
  return classifyName(host);
}

// ---------------------------------------------------------------------------------------------------
// URLs

export type UrlVerdict =
  { ok: true; url: URL; host: string } | { ok: false; rule: EgressRule; host: string; message: string };

export type DomainLists = Pick<EgressPolicy, "allowedDomains" | "blockedDomains">;

/**
 * Checks one URL against a policy. The first failing rule is reported, in this order: the URL
 * parses; the scheme is http(s); the host is not refused by class (IP literal, localhost, metadata,
 * internal name); it is not blocked; it is allowed; the port is 80 or 443; there are no credentials.
 * Host rules come before credentials so that `http://allowed.com@evil.com/` is reported for the host
 * it really names (evil.com).
 */
export function checkUrl(input: string | URL, lists: DomainLists): UrlVerdict {
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    const host = String(input).slice(0, 256);
    return { ok: false, rule: "invalid_url", host, message: `"${host}" is not a valid URL` };
  }
  const host = stripTrailingDot(url.hostname);
  const refuse = (rule: EgressRule, message: string): UrlVerdict => ({ ok: false, rule, host, message });
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return refuse("scheme_not_allowed", `the scheme ${url.protocol} is not allowed (only http and https)`);
  }
  const refusal = classifyHost(host);
  if (refusal) return refuse(refusal.rule, refusal.message);
  const blocked = matchesDomain(host, lists.blockedDomains);
  if (blocked) return refuse("blocked_domain", `${host} is blocked by "${blocked}"`);
  if (!matchesDomain(host, lists.allowedDomains)) {
    return refuse("not_allowlisted", `${host} is not in the job's allowed domains`);
  }
  const port = url.port === "" ? (url.protocol === "https:" ? 443 : 80) : Number(url.port);
  if (!ALLOWED_PORTS.includes(port)) {
    return refuse("port_not_allowed", `port ${port} is not allowed (only ${ALLOWED_PORTS.join(" and ")})`);
  }
  if (url.username !== "" || url.password !== "") {
    return refuse("credentials_in_url", "credentials in the URL are not allowed; send an Authorization header");
  }
  return { ok: true, url, host };
}
