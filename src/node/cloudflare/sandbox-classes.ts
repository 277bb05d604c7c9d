/**
 * The Sandbox Durable Object classes behind node jobs, one per container instance type (an instance type
 * belongs to a `[[containers]]` entry, and each entry to one class). The Worker's main module must export
 * them; container/README.md has the wrangler configuration that binds them.
 */
import { Sandbox } from "@cloudflare/sandbox";

/** A job gets no internet, as in the local home; the SDK talks to the container without it. */
class NodeJobSandbox extends Sandbox<Env> {
  override enableInternet = false;
}

/** `low` cordon: `basic` instances (1/4 vCPU, 1 GiB). */
export class NodeSandboxLow extends NodeJobSandbox {}
/** `medium` cordon: `standard-1` instances (1/2 vCPU, 4 GiB). */
export class NodeSandboxMedium extends NodeJobSandbox {}
/** `high` cordon: `standard-2` instances (1 vCPU, 6 GiB). */
export class NodeSandboxHigh extends NodeJobSandbox {}
