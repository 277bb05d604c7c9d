#!/usr/bin/env node
/**
 * `npm run dev`: the whole platform locally, in one command.
 * Applies D1 migrations to the local database, starts the local sandbox host (host/) and waits for it,
 * then starts `wrangler dev` pointed at it. Ctrl-C stops both.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { DEV_KEY_FILE, loadDevVars } from "./local-config.mjs";

const HOST_PORT = Number(process.env.CORDON_HOST_PORT ?? 8788);
const DEV_PORT = Number(process.env.PORT ?? 8787);
const hostUrl = `http://127.0.0.1:${HOST_PORT}`;
const devUrl = `http://127.0.0.1:${DEV_PORT}`;
const { ADMIN_TOKEN, CORDON_HOST_TOKEN: hostToken } = loadDevVars();

const migrate = spawnSync("wrangler", ["d1", "migrations", "apply", "DB", "--local"], {
  stdio: ["ignore", "inherit", "inherit"],
  env: { ...process.env, CI: "1" },
});
if (migrate.status !== 0) process.exit(migrate.status ?? 1);

const children = [];
const stopAll = (code) => {
  for (const child of children) child.kill("SIGTERM");
  process.exit(code);
};
process.on("SIGINT", () => stopAll(0));
process.on("SIGTERM", () => stopAll(0));

// --watch: Node restarts the host when a file it runs changes (host/, and the src/ modules it shares),
// as wrangler does for the dispatcher. Jobs running at that moment end as SANDBOX_UNAVAILABLE.
const host = spawn(process.execPath, ["--watch", "--watch-preserve-output", "host/main.ts"], {
  stdio: "inherit",
  env: { ...process.env, CORDON_HOST_PORT: String(HOST_PORT), CORDON_HOST_TOKEN: hostToken },
});
children.push(host);
host.on("exit", (code) => {
  console.error(`[cordon] the local sandbox host exited (${code}); stopping`);
  stopAll(1);
});
await waitFor(`${hostUrl}/healthz`, 30_000);

// wrangler dev reads ADMIN_TOKEN and CORDON_HOST_TOKEN from .dev.vars itself. Edge jobs and the jobs'
// database (JOB_DB, on the same files) both run on the host, where a runaway cannot hold the dispatcher.
const dev = spawn(
  "wrangler",
  ["dev", "--port", String(DEV_PORT), "--var", `CORDON_HOST_URL:${hostUrl}`, "--var", `CORDON_JOB_DB_URL:${hostUrl}`],
  { stdio: "inherit" },
);
children.push(dev);
dev.on("exit", (code) => stopAll(code ?? 0));
await waitFor(`${devUrl}/healthz`, 60_000);
const devKey = await ensureDevKey();
console.log(`
  Cordon is up: ${devUrl}
  Dev API key (tenant "dev", trust ceiling high):

    export CORDON_KEY=${devKey}

  Try:
    curl -s ${devUrl}/v1/executions -H "authorization: Bearer $CORDON_KEY" -H 'content-type: application/json' \\
      -d '{"runtime":"edge","code":"export default async function (input) { return input.a + input.b }","input":{"a":2,"b":3}}'
`);

/** Reuses the saved dev key while it still works (the local D1 persists); otherwise creates a dev tenant. */
async function ensureDevKey() {
  if (existsSync(DEV_KEY_FILE)) {
    const { key } = JSON.parse(readFileSync(DEV_KEY_FILE, "utf8"));
    const probe = await fetch(`${devUrl}/v1/executions?limit=1`, { headers: { authorization: `Bearer ${key}` } });
    if (probe.ok) return key;
  }
  const response = await fetch(`${devUrl}/v1/admin/tenants`, {
    method: "POST",
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "dev", maxTrustLevel: "high", rateLimit: 100_000, maxConcurrency: 50 }),
  });
  if (!response.ok) {
    console.error(`[cordon] could not create the dev tenant: ${response.status} ${await response.text()}`);
    stopAll(1);
  }
  const { apiKey } = await response.json();
  mkdirSync(".wrangler", { recursive: true });
  writeFileSync(DEV_KEY_FILE, JSON.stringify({ key: apiKey.key }));
  return apiKey.key;
}

async function waitFor(url, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not up yet
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  console.error(`[cordon] ${url} did not come up within ${timeoutMs} ms`);
  stopAll(1);
}
