import { createServer } from "node:net";
import { randomBytes } from "node:crypto";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

/** The tests' own local sandbox host (started by test/global-setup.ts) gets a free port and a fresh token. */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

process.env.CORDON_TEST_HOST_PORT ??= String(await freePort());
process.env.CORDON_TEST_HOST_TOKEN ??= randomBytes(16).toString("hex");
/** The admin token of the dispatcher under test; tests import it from test/helpers.ts. */
const TEST_ADMIN_TOKEN = "test-admin-token";
// wrangler.toml declares both as required secrets; the bindings below set them, and these keep the
// plugin's check of the environment from warning where there is no .dev.vars (CI).
process.env.ADMIN_TOKEN ??= TEST_ADMIN_TOKEN;
process.env.CORDON_HOST_TOKEN ??= process.env.CORDON_TEST_HOST_TOKEN;
const PROJECT_NAME = "cordon";

export default defineConfig({
  plugins: [
    cloudflareTest(async () => ({
      wrangler: { configPath: "./wrangler.toml" },
      miniflare: {
        bindings: {
          CORDON_HOST_URL: `http://127.0.0.1:${process.env.CORDON_TEST_HOST_PORT}`,
          CORDON_HOST_TOKEN: process.env.CORDON_TEST_HOST_TOKEN ?? "",
          ADMIN_TOKEN: TEST_ADMIN_TOKEN,
          TEST_MIGRATIONS: await readD1Migrations("./migrations"),
        },
        // EGRESS_TEST_UPSTREAM is the tests' stand-in for the internet behind the egress gateway; it
        // replaces the transport after every check, never a rule, and never appears in wrangler.toml.
        serviceBindings: { EXAMPLE_CLIENT: "cordon-example-client", EGRESS_TEST_UPSTREAM: "cordon-egress-upstream" },
        workers: [
          {
            // workers/example-client runs as an auxiliary Worker bound to the dispatcher's SandboxService.
            name: "cordon-example-client",
            modules: true,
            scriptPath: "./workers/example-client/index.js",
            compatibilityDate: "2026-10-20",
            // The plugin runs the Worker under test as "vitest-plugin-runner-<project name>" and does not
            // rewrite auxiliary Workers' bindings to it, so the binding names the runner directly.
            serviceBindings: { CORDON: { name: `vitest-plugin-runner-${PROJECT_NAME}`, entrypoint: "SandboxService" } },
            bindings: { CORDON_API_KEY: "ck_exampleclnt0_examplekeyexamplekeyexamplekey00" },
          },
          {
            // Canned responses by path, for any host (test/egress/upstream).
            name: "cordon-egress-upstream",
            modules: true,
            scriptPath: "./test/egress/upstream/index.js",
            compatibilityDate: "2026-10-20",
          },
        ],
      },
    })),
  ],
  test: {
    name: PROJECT_NAME,
    include: ["test/**/*.test.ts"],
    // Plain Node's tests run in vitest.host.config.ts.
    exclude: ["test/plain-node/**"],
    // The summary reporter prints a closing "N passed, N failed" line that CI logs are read by.
    reporters: ["default", "./test/summary-reporter.ts"],
    globalSetup: ["test/global-setup.ts"],
    setupFiles: ["test/apply-migrations.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
