/**
 * The host's one kernel setting, on a stand-in file (the real one is /sys/kernel/rcu_expedited):
 * turned on only as root and only from 0, put back on restore, never touched when opted out.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { tuneKernel } from "../node/kernel-tuning.ts";

const dir = mkdtempSync(join(tmpdir(), "cordon-kernel-test-"));
const root = process.getuid?.() === 0;
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function setting(value: string): string {
  const path = join(dir, `rcu-${Math.random().toString(36).slice(2)}`);
  writeFileSync(path, `${value}\n`);
  return path;
}

describe("tuneKernel", () => {
  it.skipIf(!root)("turns expedited RCU on from 0, and back off on restore", () => {
    const path = setting("0");
    const tuning = tuneKernel({}, path);
    expect(tuning.expeditedRcu).toBe(true);
    expect(readFileSync(path, "utf8")).toBe("1");
    tuning.restore();
    expect(readFileSync(path, "utf8")).toBe("0");
  });

  it("leaves a setting that is already on, or an opted-out host, alone", () => {
    const on = setting("1");
    expect(tuneKernel({}, on).expeditedRcu).toBe(false);
    expect(readFileSync(on, "utf8")).toBe("1\n");
    const off = setting("0");
    expect(tuneKernel({ CORDON_HOST_EXPEDITE_RCU: "0" }, off).expeditedRcu).toBe(false);
    expect(readFileSync(off, "utf8")).toBe("0\n");
  });

  it("keeps the defaults where the setting cannot be read", () => {
    expect(tuneKernel({}, join(dir, "missing")).expeditedRcu).toBe(false);
  });
});
