import { defineConfig } from "vitest/config";

/**
 * The tests that run in plain Node (not the workers pool), run with `-c vitest.host.config.ts`: the
 * local sandbox host's own, and the client as Node itself loads it.
 */
export default defineConfig({
  test: {
    include: ["host/test/**/*.test.ts", "test/plain-node/**/*.test.ts"],
    environment: "node",
    reporters: ["default", "./test/summary-reporter.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
