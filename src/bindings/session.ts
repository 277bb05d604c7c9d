/**
 * One job's bindings: which exist (by cordon), the quota of calls, the counters for the metrics, and
 * the dispatch of each call to the DB or KV implementation. Both homes use it: in production the
 * JobDatabase/JobKV entrypoints find the session of their job; locally the dispatcher answers the
 * calls the sandbox host relays. Never throws: every outcome is a BindingAnswer.
 */
import { ErrorCode } from "../errors";
import { CORDONS, type TrustLevel } from "../policy/trust";
import { allowedStatementKinds, runStatement, type DatabaseScope } from "./database";
import type { JobDatabase } from "./job-database";
import { kvDelete, kvGet, kvList, kvPut, tenantKvPrefix } from "./kv";
import type { StorageQuota } from "./storage-quota";
import { decodeBindingCall, type BindingAnswer, type BindingCall, type BindingCounters } from "./protocol";

export interface BindingSessionOptions {
  executionId: string;
  tenantId: string;
  trustLevel: TrustLevel;
  /** The job's `bindingCalls` limit. */
  maxCalls: number;
  db: JobDatabase;
  kv: KVNamespace;
  /** The tenant's storage limit over `db` and `kv`, kept by its ledger. */
  storage: StorageQuota;
  /**
   * For a job started before its admission answer (see service/early-start.ts): resolves true once it
   * is admitted, false if it is refused. Calls wait for it, so a refused job has no effect on its data.
   */
  admitted?: Promise<boolean>;
}

export class BindingSession {
  readonly counters: BindingCounters = { dbQueries: 0, dbRejected: 0, kvReads: 0, kvWrites: 0 };
  readonly bindings: readonly ("DB" | "KV")[];
  readonly #options: BindingSessionOptions;
  readonly #database: DatabaseScope;
  readonly #kvPrefix: string;
  #calls = 0;

  constructor(options: BindingSessionOptions) {
    this.#options = options;
    this.bindings = CORDONS[options.trustLevel].bindings;
    this.#database = {
      tenantKey: options.tenantId.replace(/^ten_/, ""),
      allowedKinds: allowedStatementKinds(CORDONS[options.trustLevel].sqlStatementKinds),
      storage: options.storage,
    };
    this.#kvPrefix = tenantKvPrefix(options.tenantId);
  }

  get executionId(): string {
    return this.#options.executionId;
  }

  /** `raw`: the call as JSON text (see protocol.ts). */
  async call(raw: unknown): Promise<BindingAnswer> {
    const decoded = decodeBindingCall(raw);
    if (!decoded.ok) return refusal(decoded.message, decoded.rule);
    const call = decoded.call;
    if (this.#options.admitted && !(await this.#options.admitted)) {
      return refusal("the job was not admitted", "not_admitted");
    }
    if (!this.bindings.includes(call.binding)) {
      return refusal(
        `the ${call.binding} binding is not available at trust level "${this.#options.trustLevel}"`,
        "binding_not_allowed",
      );
    }
    if (this.#calls >= this.#options.maxCalls) {
      if (call.binding === "DB") this.counters.dbRejected++;
      return refusal(`the job used all ${this.#options.maxCalls} of its binding calls`, "binding_call_quota");
    }
    this.#calls++;
    try {
      return await this.#dispatch(call);
    } catch (error) {
      return {
        ok: false,
        error: { code: ErrorCode.SANDBOX_RUNTIME_ERROR, message: `the binding failed: ${String(error)}` },
      };
    }
  }

  async #dispatch(call: BindingCall): Promise<BindingAnswer> {
    const { db, kv } = this.#options;
    switch (call.method) {
      case "query": {
        this.counters.dbQueries++;
        const answer = await runStatement(db, this.#database, call.sql, call.params);
        if (!answer.ok && answer.error.code === ErrorCode.SANDBOX_SECURITY_VIOLATION) this.counters.dbRejected++;
        return answer;
      }
      case "get":
        this.counters.kvReads++;
        return kvGet(kv, this.#kvPrefix, call.key);
      case "list":
        this.counters.kvReads++;
        return kvList(kv, this.#kvPrefix, call);
      case "put":
        this.counters.kvWrites++;
        return kvPut(kv, this.#kvPrefix, call.key, call.value, call.expirationTtl, this.#options.storage);
      case "delete":
        this.counters.kvWrites++;
        return kvDelete(kv, this.#kvPrefix, call.key, this.#options.storage);
    }
  }
}

function refusal(message: string, rule: string): BindingAnswer {
  return { ok: false, error: { code: ErrorCode.SANDBOX_SECURITY_VIOLATION, message, rule } };
}
