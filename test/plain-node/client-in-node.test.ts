/**
 * The TypeScript client as the README shows it: imported by a `.ts` file that Node runs itself (type
 * stripping, no bundler), so every runtime import of the client must name its file.
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const CLIENT = fileURLToPath(new URL("../../src/client/index.ts", import.meta.url));

describe("the client in plain Node", () => {
  it("loads from its TypeScript source and throws CordonError for a refused call", () => {
    const script = `
      import { Cordon, CordonError } from ${JSON.stringify(CLIENT)};
      const cordon = new Cordon({ baseUrl: "data:text/plain,", apiKey: "ck_none", maxRetries: 0 });
      globalThis.fetch = async () => Response.json({ error: { code: "UNAUTHORIZED", message: "no such key" } }, { status: 401 });
      try {
        await cordon.usage();
      } catch (error) {
        console.log(JSON.stringify({ isCordonError: error instanceof CordonError, code: error.code, status: error.status }));
      }
    `;
    const run = spawnSync(process.execPath, ["--input-type=module-typescript", "-e", script], { encoding: "utf8" });
    expect(run.stderr).toBe("");
    expect(JSON.parse(run.stdout)).toEqual({ isCordonError: true, code: "UNAUTHORIZED", status: 401 });
  });
});
