#!/usr/bin/env node
/**
 * `npm run cordon -- <command>`: a small CLI over the admin API.
 * Talks to CORDON_URL (default http://127.0.0.1:8787) with ADMIN_TOKEN from the environment or .dev.vars.
 */
import { parseArgs } from "node:util";
import { loadDevVars } from "./local-config.mjs";

const USAGE = `usage: npm run cordon -- <command>
  tenants create --name NAME --trust high|medium|low|untrusted [--rate-limit N] [--concurrency N] [--storage-mb N]
  tenants show TENANT_ID
  tenants update TENANT_ID [--name NAME] [--trust LEVEL] [--rate-limit N] [--concurrency N] [--storage-mb N]
  keys list TENANT_ID
  keys create TENANT_ID [--name NAME] [--rate-limit N]
  keys rotate KEY_ID
  keys revoke KEY_ID`;

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    name: { type: "string" },
    trust: { type: "string" },
    "rate-limit": { type: "string" },
    concurrency: { type: "string" },
    "storage-mb": { type: "string" },
  },
});
const [group, action, id] = positionals;
const baseUrl = process.env.CORDON_URL ?? "http://127.0.0.1:8787";
const adminToken = process.env.ADMIN_TOKEN ?? loadDevVars().ADMIN_TOKEN;
const number = (text) => (text === undefined ? undefined : Number(text));
const tenantFields = () =>
  dropUndefined({
    name: values.name,
    maxTrustLevel: values.trust,
    rateLimit: number(values["rate-limit"]),
    maxConcurrency: number(values.concurrency),
    storageLimitMb: number(values["storage-mb"]),
  });

const commands = {
  "tenants create": () => request("POST", "/tenants", tenantFields()),
  "tenants show": () => request("GET", `/tenants/${required(id)}`),
  "tenants update": () => request("PATCH", `/tenants/${required(id)}`, tenantFields()),
  "keys list": () => request("GET", `/tenants/${required(id)}/keys`),
  "keys create": () =>
    request(
      "POST",
      `/tenants/${required(id)}/keys`,
      dropUndefined({ name: values.name, rateLimit: number(values["rate-limit"]) }),
    ),
  "keys rotate": () => request("POST", `/keys/${required(id)}/rotate`),
  "keys revoke": () => request("POST", `/keys/${required(id)}/revoke`),
};

const command = commands[`${group} ${action}`];
if (!command) {
  console.error(USAGE);
  process.exit(2);
}
await command();

async function request(method, path, body) {
  const response = await fetch(`${baseUrl}/v1/admin${path}`, {
    method,
    headers: { authorization: `Bearer ${adminToken}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  console.log(JSON.stringify(await response.json(), null, 2));
  if (!response.ok) process.exit(1);
}

function required(value) {
  if (!value) {
    console.error(USAGE);
    process.exit(2);
  }
  return value;
}

function dropUndefined(object) {
  return Object.fromEntries(Object.entries(object).filter(([, value]) => value !== undefined));
}
