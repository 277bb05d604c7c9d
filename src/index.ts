/** The Cordon dispatcher Worker. */
import { app } from "./app";

export { JobBindings } from "./bindings/entrypoint";
export { EgressGateway } from "./egress/gateway";
export { ExecutionTracker } from "./durable/execution-tracker";
export { SandboxPool } from "./durable/sandbox-pool";
export { TenantLedger } from "./durable/tenant-ledger";
export { NodeSandboxHigh, NodeSandboxLow, NodeSandboxMedium } from "./node/cloudflare/sandbox-classes";
export { SandboxService } from "./rpc/sandbox-service";

export default {
  fetch: app.fetch,
} satisfies ExportedHandler<Env>;
