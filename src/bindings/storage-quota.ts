/**
 * A tenant's storage limit: its tables in the jobs' database (JOB_DB) and its KV entries, together.
 * Every tenant's tables share that one D1 database, so without a limit one tenant could fill it (D1
 * stops at 10 GB) for all of them; KV has no such wall, but every byte there is paid for.
 *
 * How a write is measured: a statement that can write runs in a D1 batch after a statement that does
 * nothing. A batch runs alone in its database, as one transaction, so the difference between the two
 * statements' `meta.size_after` is what this statement grew the database by (negative: shrank it, as
 * D1 gives freed pages back). Before it runs, a write that could grow the database (INSERT, UPDATE,
 * CREATE …) reserves an estimate (its text and parameters) in the tenant's ledger, which refuses it
 * once the total has reached the limit; the measured growth then replaces the estimate. The check
 * and the reservation are one call to the ledger, so writes running at the same time (up to 4 calls
 * per job, several jobs) each see the others'. DELETE and DROP always run, so a tenant at its limit
 * can make room.
 *
 * What this bounds: the growth of the database that the tenant's writes caused. It is not the size of
 * its tables to the byte: pages freed by one tenant and reused by another's write cost that write
 * nothing, and no total goes below 0 (so a tenant cannot bank another's freed space as credit), so
 * the sum over tenants only approximates the database's size. What it does not bound: how far one statement goes past
 * its estimate. An `INSERT … SELECT` can copy a table, and one over a recursive CTE can make data out
 * of nothing (a string doubled at each step, `replace`), up to D1's own limits
 * (2 MB a row, 10 GB the database); the limit then refuses the tenant's next write. Only a database
 * per tenant bounds that (see the README).
 *
 * A KV entry costs the bytes of its key and value. The ledger keeps each entry's size and expiry (all
 * of a tenant's KV writes go through its jobs' bindings), so a put that replaces a value costs the
 * difference, and a delete or an expiry gives the bytes back. One write per key is under way at a
 * time (a second is refused, `key_busy`), and meanwhile the entry counts the larger of its old and
 * new sizes; once the call has ended, the entry is what it left in KV. When the ledger cannot be told
 * how a write ended, a KV entry keeps its larger size and a database write its reservation (until the
 * ledger restarts).
 */

import type { StorageGrant } from "../durable/storage-account";
import type { TenantLedgerApi } from "../durable/tenant-ledger";
import { ErrorCode } from "../errors";
import type { BindingAnswer } from "./protocol";

/** The tenant's ledger, as far as storage goes. */
export type StorageLedger = Pick<TenantLedgerApi, "reserveStorage" | "settleStorage" | "beginKvWrite" | "endKvWrite">;

export const BYTES_PER_MB = 1024 * 1024;

/** One job's view of its tenant's storage account: every check and count is one call to the ledger. */
export class StorageQuota {
  readonly limitBytes: number;
  /**
   * A fresh stub for each call: a job's calls reach the session from the JobBindings entrypoint, whose
   * requests cannot use I/O objects (a stub) made in the request that started the job.
   */
  readonly #ledger: () => StorageLedger;

  constructor(limitBytes: number, ledger: () => StorageLedger) {
    this.limitBytes = limitBytes;
    this.#ledger = ledger;
  }

  /** Before a database write that can grow it: reserves `estimateBytes`, or refuses at the limit. */
  reserveWrite(estimateBytes: number): Promise<StorageGrant> {
    return this.#ledger().reserveStorage(estimateBytes, this.limitBytes);
  }

  /** After a database write (0 measured if it failed): never throws, the write's answer stands. */
  async settleWrite(reservedBytes: number, measuredBytes: number): Promise<void> {
    await this.#ledger()
      .settleStorage(reservedBytes, measuredBytes)
      .catch((error: unknown) => accountFailed("settle a database write", error));
  }

  /** Before a KV put (`bytes`: key and value) or delete (`bytes` null). */
  beginKvWrite(key: string, bytes: number | null, expiresAt: number | null): Promise<StorageGrant> {
    return this.#ledger().beginKvWrite(key, bytes, expiresAt, this.limitBytes);
  }

  /** After the KV call: never throws, the call's answer stands (the entry keeps its larger size). */
  async endKvWrite(key: string, succeeded: boolean): Promise<void> {
    await this.#ledger()
      .endKvWrite(key, succeeded)
      .catch((error: unknown) => accountFailed("end a KV write", error));
  }
}

/** The account errs high when the ledger cannot be told how a write ended; the job is not failed for it. */
function accountFailed(what: string, error: unknown): void {
  console.error(JSON.stringify({ event: "storage_account_failed", what, message: String(error) }));
}

/** A write refused by the storage account. */
export function storageRefusal(grant: Extract<StorageGrant, { granted: false }>, limitBytes: number): BindingAnswer {
  const message =
    grant.reason === "key_busy"
      ? "another write to this key is under way (KV takes one write per key per second)"
      : `the tenant stores ${grant.usedBytes} bytes (tables and KV), its limit is ${limitBytes}; delete rows, tables or KV entries to make room`;
  return { ok: false, error: { code: ErrorCode.SANDBOX_SECURITY_VIOLATION, message, rule: grant.reason } };
}
