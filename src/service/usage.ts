/** What a tenant has used of its limits: the hourly window, concurrency slots and storage. Checks no code, counts nothing. */
import { BYTES_PER_MB } from "../bindings/storage-quota";
import type { Usage } from "../schemas";
import type { Caller } from "../tenants/authenticate";
import { ledgerOf, rateRequestOf } from "./admission";

export async function tenantUsage(env: Env, caller: Caller): Promise<Usage> {
  const { tenant } = caller;
  const { rate, running, storageUsedBytes } = await ledgerOf(env, tenant.id).usage(rateRequestOf(caller));
  return {
    tenantId: tenant.id,
    maxTrustLevel: tenant.maxTrustLevel,
    requests: {
      limit: rate.limit,
      remaining: rate.remaining,
      resetSeconds: Math.ceil(rate.resetMs / 1000),
      exhausted: rate.allowed || rate.reason === "concurrency" ? null : rate.reason,
    },
    concurrency: { limit: tenant.maxConcurrency, running },
    storage: { limitBytes: tenant.storageLimitMb * BYTES_PER_MB, usedBytes: storageUsedBytes },
  };
}
