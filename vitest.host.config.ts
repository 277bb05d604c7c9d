import { defineConfig } from "vitest/config";

/** The local sandbox host's own tests: plain Node (not the workers pool), run with `-c vitest.host.config.ts`. */
export default defineConfig({
  test: {
    include: ["host/test/**/*.test.ts"],
    environment: "node",
    reporters: ["default", "./test/summary-reporter.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
