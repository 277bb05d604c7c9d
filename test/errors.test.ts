/** The error vocabulary: every code has one status, and the README documents each with that status. */
import { describe, expect, it } from "vitest";
import readme from "../README.md?raw";
import { ERROR_STATUS, ErrorCode } from "../src/errors";

describe("error codes", () => {
  it("are each documented in the README's error table with their HTTP status", () => {
    for (const code of Object.values(ErrorCode)) {
      const row = new RegExp(`^\\|\\s*\`${code}\`\\s*\\|\\s*${ERROR_STATUS[code]}\\s*\\|`, "m");
      expect(readme, code).toMatch(row);
    }
  });
});
