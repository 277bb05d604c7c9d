/**
 * The test-only upstream must never reach production: it is declared in the test configuration only,
 * and the deployed Worker's configuration never binds it (the gateway would send every allowed request
 * there instead of to the internet; the checks would still run, but the answers would be wrong).
 */
import { describe, expect, it } from "vitest";
import wrangler from "../../wrangler.toml?raw";

describe("EGRESS_TEST_UPSTREAM", () => {
  it("is not bound in wrangler.toml", () => {
    expect(wrangler).not.toContain("EGRESS_TEST_UPSTREAM");
  });
});
