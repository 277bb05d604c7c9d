/**
 * The production warm pool of node sandboxes (SandboxPool) on a real Durable Object's SQLite, with
 * the one part that needs Cloudflare's container runtime, booting and destroying containers, replaced
 * by a starter that records its calls. The clock is the test's, so staleness and demand are exact.
 */
import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import {
  DEMAND_WINDOW_MS,
  FAILURE_BACKOFF_MS,
  SandboxPoolCore,
  WARM_TTL_MS,
  poolSize,
  type SandboxPool,
  type SandboxStarter,
} from "../../src/durable/sandbox-pool";

class RecordingStarter implements SandboxStarter {
  readonly warmed: string[] = [];
  readonly destroyed: string[] = [];
  failNext = false;

  async warm(sandboxId: string): Promise<void> {
    if (this.failNext) {
      this.failNext = false;
      throw new Error("the container did not boot");
    }
    this.warmed.push(sandboxId);
  }

  async destroy(sandboxId: string): Promise<void> {
    this.destroyed.push(sandboxId);
  }
}

/** Runs `body` on a fresh pool object's storage with a recording starter and a settable clock. */
async function withPool(
  size: number,
  body: (pool: SandboxPoolCore, starter: RecordingStarter, clock: { now: number }) => Promise<void>,
): Promise<void> {
  const stub = env.SANDBOX_POOL.get(env.SANDBOX_POOL.idFromName(crypto.randomUUID()));
  await runInDurableObject(stub, async (_instance: SandboxPool, state) => {
    const starter = new RecordingStarter();
    const clock = { now: 1_000_000 };
    let ids = 0;
    const pool = new SandboxPoolCore(state.storage.sql, starter, {
      size,
      now: () => clock.now,
      newId: () => `sandbox-${++ids}`,
    });
    await body(pool, starter, clock);
  });
}

describe("SandboxPool", () => {
  it("starts a job cold when nothing is ready, then boots the pool full for the next ones", async () => {
    await withPool(2, async (pool, starter) => {
      expect(pool.take("exec-1")).toEqual({ sandboxId: "sandbox-1", warm: false });
      await pool.refill();
      expect(starter.warmed).toEqual(["sandbox-2", "sandbox-3"]);
      expect(pool.take("exec-2")).toEqual({ sandboxId: "sandbox-2", warm: true });
      expect(pool.take("exec-3")).toEqual({ sandboxId: "sandbox-3", warm: true });
      expect(pool.status()).toMatchObject({ size: 2, ready: 0, assigned: 3, hits: 2, misses: 1 });
    });
  });

  it("never hands one sandbox to two jobs: each take is single use, and a finished job's sandbox is gone", async () => {
    await withPool(1, async (pool) => {
      pool.take("exec-1");
      await pool.refill();
      const second = pool.take("exec-2");
      const third = pool.take("exec-3");
      expect(second.sandboxId).not.toBe(third.sandboxId);
      expect(third.warm).toBe(false);
      pool.finished("exec-2");
      expect(pool.sandboxOf("exec-2")).toBeUndefined();
      expect(pool.sandboxOf("exec-3")).toBe(third.sandboxId);
      // Asking again for the same job gives its sandbox, never a second one.
      expect(pool.take("exec-3")).toEqual({ sandboxId: third.sandboxId, warm: false });
    });
  });

  it("takes back a warm sandbox its job never used, and forgets a cold one", async () => {
    await withPool(1, async (pool) => {
      pool.take("exec-1");
      await pool.refill();
      const warm = pool.take("exec-2");
      pool.put("exec-2", true);
      expect(pool.take("exec-3")).toEqual({ sandboxId: warm.sandboxId, warm: true });
      pool.put("exec-1", false);
      expect(pool.sandboxOf("exec-1")).toBeUndefined();
    });
  });

  it("drops a ready sandbox before its container would sleep, and replaces it while there is demand", async () => {
    await withPool(1, async (pool, starter, clock) => {
      pool.take("exec-1");
      expect(await pool.refill()).toBe(clock.now + WARM_TTL_MS);
      clock.now += WARM_TTL_MS;
      expect(pool.take("exec-2").warm).toBe(false);
      await pool.refill();
      expect(starter.destroyed).toEqual(["sandbox-2"]);
      expect(starter.warmed).toEqual(["sandbox-2", "sandbox-4"]);
    });
  });

  it("keeps no containers running once the cordon has been idle for the demand window", async () => {
    await withPool(1, async (pool, starter, clock) => {
      pool.take("exec-1");
      await pool.refill();
      clock.now += DEMAND_WINDOW_MS + 1;
      expect(await pool.refill()).toBeNull();
      expect(starter.destroyed).toEqual(["sandbox-2"]);
      expect(pool.status()).toMatchObject({ ready: 0, starting: 0 });
    });
  });

  it("backs off after a container fails to boot, keeping nothing of it", async () => {
    await withPool(1, async (pool, starter, clock) => {
      pool.take("exec-1");
      starter.failNext = true;
      expect(await pool.refill()).toBe(clock.now + FAILURE_BACKOFF_MS);
      expect(starter.destroyed).toEqual(["sandbox-2"]);
      expect(pool.status()).toMatchObject({ ready: 0, starting: 0 });
    });
  });

  it("closes: idle sandboxes destroyed, jobs in flight keep theirs, no refills until the next take", async () => {
    await withPool(2, async (pool, starter) => {
      pool.take("exec-1");
      await pool.refill();
      await pool.close();
      expect(starter.destroyed.sort()).toEqual(["sandbox-2", "sandbox-3"]);
      expect(pool.sandboxOf("exec-1")).toBe("sandbox-1");
      await pool.refill();
      expect(starter.warmed).toHaveLength(2);
      pool.take("exec-2");
      await pool.refill();
      expect(starter.warmed).toHaveLength(4);
    });
  });

  it("stops a refill round when the pool is closed while a container boots, and drops that container", async () => {
    await withPool(3, async (pool, starter) => {
      pool.take("exec-1");
      const warm = starter.warm.bind(starter);
      starter.warm = async (sandboxId) => {
        await warm(sandboxId);
        await pool.close();
      };
      await pool.refill();
      expect(starter.warmed).toEqual(["sandbox-2"]);
      expect(starter.destroyed).toEqual(["sandbox-2"]);
      expect(pool.status()).toMatchObject({ ready: 0, starting: 0, assigned: 1 });
    });
  });

  it("with size 0 hands out fresh sandboxes and boots none", async () => {
    await withPool(0, async (pool, starter) => {
      expect(pool.take("exec-1").warm).toBe(false);
      expect(await pool.refill()).toBeNull();
      expect(starter.warmed).toEqual([]);
      expect(pool.status()).toMatchObject({ hits: 0, misses: 0 });
    });
  });

  it("reads its size from CORDON_NODE_POOL_SIZE, bounded, with 1 by default", () => {
    expect(poolSize({ CORDON_NODE_POOL_SIZE: "3" })).toBe(3);
    expect(poolSize({ CORDON_NODE_POOL_SIZE: "0" })).toBe(0);
    expect(poolSize({ CORDON_NODE_POOL_SIZE: "500" })).toBe(16);
    expect(poolSize({ CORDON_NODE_POOL_SIZE: "lots" })).toBe(1);
  });
});
