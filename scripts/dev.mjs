#!/usr/bin/env node
/**
 * `npm run dev`: the whole platform locally, in one command.
 * Applies D1 migrations to the local database, starts the local sandbox host (host/) and waits for it,
 * then starts `wrangler dev` pointed at it. Ctrl-C stops both.
 */
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";

const HOST_PORT = Number(process.env.CORDON_HOST_PORT ?? 8788);
const DEV_PORT = Number(process.env.PORT ?? 8787);
const hostToken = randomBytes(24).toString("hex");
const hostUrl = `http://127.0.0.1:${HOST_PORT}`;

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

const host = spawn(process.execPath, ["host/main.ts"], {
  stdio: "inherit",
  env: { ...process.env, CORDON_HOST_PORT: String(HOST_PORT), CORDON_HOST_TOKEN: hostToken },
});
children.push(host);
host.on("exit", (code) => {
  console.error(`[cordon] the local sandbox host exited (${code}); stopping`);
  stopAll(1);
});
await waitFor(`${hostUrl}/healthz`, 30_000);

const dev = spawn(
  "wrangler",
  ["dev", "--port", String(DEV_PORT), "--var", `CORDON_HOST_URL:${hostUrl}`, "--var", `CORDON_HOST_TOKEN:${hostToken}`],
  { stdio: "inherit" },
);
children.push(dev);
dev.on("exit", (code) => stopAll(code ?? 0));
await waitFor(`http://127.0.0.1:${DEV_PORT}/healthz`, 60_000);
console.log(`
  Cordon is up: http://127.0.0.1:${DEV_PORT}
  Try:
    curl -s http://127.0.0.1:${DEV_PORT}/v1/executions -H 'content-type: application/json' \\
      -d '{"runtime":"edge","code":"export default async function (input) { return input.a + input.b }","input":{"a":2,"b":3}}'
`);

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
