/**
 * A tenant's storage limit in the jobs' database (JOB_DB). Every tenant's tables share that one D1
 * database, so without a limit one tenant could fill it (D1 stops at 10 GB) for all of them.
 *
 * How a write is measured: a statement that can write runs in a D1 batch after a statement that does
 * nothing. A batch runs alone in its database, as one transaction, so the difference between the two
 * statements' `meta.size_after` is what this statement grew the database by (negative: shrank it, as
 * D1 gives freed pages back). The tenant's ledger keeps the running total. A write that could grow
 * the database (INSERT, UPDATE, CREATE …) is refused once the total has reached the tenant's limit;
 * DELETE and DROP always run, so a tenant at its limit can make room.
 *
 * What this bounds: the growth of the database that the tenant's writes caused. It is not the size of
 * its tables to the byte: pages freed by one tenant and reused by another's write cost that write
 * nothing, and no total goes below 0 (so a tenant cannot bank another's freed space as credit). The
 * sum over tenants is the database's size, so the database stays within the sum of their limits. One
 * write may pass the limit (an `INSERT … SELECT` doubling a table, say) before the next is refused;
 * jobs running at once each learn the total from their own writes.
 */

/** The tenant's ledger, as far as storage goes (TenantLedger implements it). */
export interface StorageLedger {
  storageUsed(): Promise<number>;
  chargeStorage(deltaBytes: number): Promise<number>;
}

export const BYTES_PER_MB = 1024 * 1024;

export class StorageQuota {
  readonly limitBytes: number;
  readonly #ledger: StorageLedger;
  /** The tenant's total as last heard from the ledger (undefined: not asked yet in this job). */
  #usedBytes: number | undefined;

  constructor(limitBytes: number, ledger: StorageLedger) {
    this.limitBytes = limitBytes;
    this.#ledger = ledger;
  }

  /**
   * The tenant's total when it has reached its limit, else null. A total at the limit is asked again
   * before it refuses: another job of the tenant may have made room since.
   */
  async fullAt(): Promise<number | null> {
    if (this.#usedBytes === undefined || this.#usedBytes >= this.limitBytes) {
      this.#usedBytes = await this.#ledger.storageUsed();
    }
    return this.#usedBytes >= this.limitBytes ? this.#usedBytes : null;
  }

  async charge(deltaBytes: number): Promise<void> {
    this.#usedBytes = await this.#ledger.chargeStorage(deltaBytes);
  }
}
