/** What a tenant has used of its limits: the hourly window, concurrency slots and storage. Checks no code, counts nothing. */
import { BYTES_PER_MB } from "../bindings/storage-quota";
import type { StorageUse } from "../durable/storage-account";
import type { StorageReport, Usage } from "../schemas";
import type { Caller } from "../tenants/authenticate";
import { ledgerOf, rateRequestOf } from "./admission";

export async function tenantUsage(env: Env, caller: Caller): Promise<Usage> {
  const { tenant } = caller;
  const { rate, running, storage } = await ledgerOf(env, tenant.id).usage(rateRequestOf(caller));
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
    storage: storageReport(tenant.storageLimitMb, storage),
  };
}

export function storageReport(limitMb: number, use: StorageUse): StorageReport {
  return { limitBytes: limitMb * BYTES_PER_MB, usedBytes: use.dbBytes + use.kvBytes, ...use };
}
