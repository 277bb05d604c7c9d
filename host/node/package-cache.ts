/**
 * The npm packages of node jobs: installed by the host, outside every job's sandbox, into a cache
 * directory per package set, and mounted read-only into the sandboxes of the jobs that ask for that set.
 *
 * - One install per set and scope: the key is a hash of the sorted specs, the registry and the scope
 *   (the tenant, unless the host shares sets across tenants). A set that is cached costs nothing;
 *   concurrent jobs wanting a set that is being installed wait for that one install. Per tenant, a
 *   cache hit (or a fast start) tells a tenant nothing about which packages other tenants use.
 * - npm runs with `--ignore-scripts` in a sandbox of its own (`installCommand`), as the unprivileged
 *   sandbox uid, bounded in time (the whole npm process group is SIGKILLed past `installTimeoutMs`).
 * - The finished tree is made read-only and, on a root host, owned by root, then renamed into place,
 *   so `<root>/<key>` exists only complete. The job's sandbox binds it read-only on top of that.
 * - The cache is bounded in bytes: past `maxBytes`, the least recently used sets that no job or warm
 *   sandbox is using are removed.
 *
 * Nothing npm prints reaches the reply but its error code and the spec it named: a dependency may
 * point npm at any URL, and the answer must not travel back to the job's owner.
 */
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  chmodSync,
  existsSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  chownSync,
} from "node:fs";
import { rm } from "node:fs/promises";
import { delimiter, dirname, join } from "node:path";
import { BoundedText } from "./channel.ts";
import { packageName, type InstallError, type PackageCacheOutcome } from "./protocol.ts";
import { INSTALL_ENV, installCommand, type Tools } from "./sandbox-command.ts";

const MiB = 1024 * 1024;
export const DEFAULT_REGISTRY = "https://registry.npmjs.org/";
export const DEFAULT_INSTALL_TIMEOUT_MS = 60_000;
export const DEFAULT_CACHE_BYTES = 1024 * MiB;
/** npm runs at once; more installs queue (each one downloads and unpacks a whole tree). */
const MAX_CONCURRENT_INSTALLS = 2;
/** What is kept of npm's output, only to find its error code. */
const NPM_OUTPUT_BYTES = 64 * 1024;
/** A half-done install directory older than this belongs to no live install (they are bounded in time). */
const STALE_INSTALL_MS = 10 * 60_000;
const KEY = /^[0-9a-f]{64}$/;
const INSTALL_PREFIX = ".install-";
const TRASH_PREFIX = ".trash-";

export interface PackageCacheOptions {
  root: string;
  maxBytes: number;
  installTimeoutMs: number;
  registry: string;
  tools: Tools;
  nodeBinary: string;
  /** npm's package directory (holding bin/npm-cli.js); undefined: npm was not found. */
  npmRoot: string | undefined;
  layout: string[];
  dropTo: { uid: number; gid: number } | undefined;
}

/** A set in use: its node_modules stays on disk until every lease is released. */
export interface PackageLease {
  key: string;
  /** The host node_modules directory to bind into the sandbox. */
  dir: string;
  release(): void;
}

export type PackageResolution =
  | { ok: true; lease: PackageLease; outcome: PackageCacheOutcome; installMs: number }
  | { ok: false; error: InstallError; message: string };

export interface PackageCacheStatus {
  /** npm runs started since the cache was created. */
  installs: number;
  hits: number;
  shared: number;
  failures: number;
  entries: number;
  bytes: number;
}

interface Entry {
  key: string;
  dir: string;
  bytes: number;
  lastUsed: number;
  leases: number;
}

type InstallOutcome = { ok: true; entry: Entry } | { ok: false; error: InstallError };

/** Finds npm's package directory from an `npm` on PATH (its bin/npm-cli.js), or undefined. */
export function findNpm(searchPath = process.env.PATH ?? ""): string | undefined {
  for (const dir of searchPath.split(delimiter).filter(Boolean)) {
    const candidate = join(dir, "npm");
    try {
      const cli = realpathSync(candidate);
      const root = dirname(dirname(cli));
      if (existsSync(join(root, "bin", "npm-cli.js"))) return root;
    } catch {
      // not here
    }
  }
  return undefined;
}

export class PackageCache {
  readonly #options: PackageCacheOptions;
  readonly #entries = new Map<string, Entry>();
  readonly #installing = new Map<string, Promise<InstallOutcome>>();
  readonly #queue: (() => void)[] = [];
  readonly #running = new Set<() => void>();
  #active = 0;
  #closed = false;
  #opened = false;
  readonly #stats = { installs: 0, hits: 0, shared: 0, failures: 0 };

  constructor(options: PackageCacheOptions) {
    this.#options = options;
  }

  get status(): PackageCacheStatus {
    let bytes = 0;
    for (const entry of this.#entries.values()) bytes += entry.bytes;
    return { ...this.#stats, entries: this.#entries.size, bytes };
  }

  static keyOf(specs: readonly string[], registry: string, scope: string): string {
    return createHash("sha256")
      .update(JSON.stringify({ registry, scope, packages: [...specs].sort() }))
      .digest("hex");
  }

  /** The set installed for `scope` (or already there), leased to the caller; or why it could not be. */
  async acquire(specs: readonly string[], scope: string): Promise<PackageResolution> {
    const started = performance.now();
    this.#open();
    const key = PackageCache.keyOf(specs, this.#options.registry, scope);
    const cached = this.#entries.get(key);
    if (cached) {
      this.#stats.hits++;
      return { ok: true, lease: this.#lease(cached), outcome: "hit", installMs: elapsed(started) };
    }
    let outcome: PackageCacheOutcome = "shared";
    let install = this.#installing.get(key);
    if (install) {
      this.#stats.shared++;
    } else {
      outcome = "miss";
      install = this.#install(key, specs).finally(() => this.#installing.delete(key));
      this.#installing.set(key, install);
    }
    const result = await install;
    if (!result.ok) {
      return {
        ok: false,
        error: result.error,
        message: `could not install packages: ${describeInstall(result.error)}`,
      };
    }
    const lease = this.#lease(result.entry);
    // Only now that the new set is leased: the eviction it may cause must not take the set itself.
    if (outcome === "miss") this.#evict();
    return { ok: true, lease, outcome, installMs: elapsed(started) };
  }

  /** A lease on a set that is cached now (for a warm sandbox), or undefined. */
  retain(key: string): PackageLease | undefined {
    const entry = this.#entries.get(key);
    return entry ? this.#lease(entry) : undefined;
  }

  /** Kills installs in flight; what is cached stays for the next host. */
  close(): void {
    this.#closed = true;
    for (const kill of this.#running) kill();
    for (const start of this.#queue.splice(0)) start();
  }

  /** On first use: the cache directory, and whatever a previous host left in it. */
  #open(): void {
    if (this.#opened) return;
    this.#opened = true;
    // 0711: the sandboxes (another uid) must traverse it to reach their set; nobody may list it.
    mkdirSync(this.#options.root, { recursive: true, mode: 0o711 });
    if (this.#options.dropTo) chmodSync(this.#options.root, 0o711);
    this.#adopt();
  }

  #lease(entry: Entry): PackageLease {
    entry.leases++;
    entry.lastUsed = Date.now();
    let released = false;
    return {
      key: entry.key,
      dir: join(entry.dir, "node_modules"),
      release: () => {
        if (released) return;
        released = true;
        entry.leases--;
        entry.lastUsed = Date.now();
        this.#evict();
      },
    };
  }

  async #install(key: string, specs: readonly string[]): Promise<InstallOutcome> {
    const { npmRoot, root } = this.#options;
    if (!npmRoot) {
      this.#stats.failures++;
      return failure("unavailable", "npm is not installed on the sandbox host");
    }
    await this.#slot();
    if (this.#closed) {
      this.#release();
      return failure("unavailable", "the sandbox host is shutting down");
    }
    this.#stats.installs++;
    const work = join(root, `${INSTALL_PREFIX}${key.slice(0, 16)}-${randomBytes(4).toString("hex")}`);
    try {
      mkdirSync(work, { mode: 0o700 });
      const dependencies = Object.fromEntries(
        specs.map((spec) => [packageName(spec), spec.slice(spec.lastIndexOf("@") + 1)]),
      );
      writeFileSync(join(work, "package.json"), JSON.stringify({ private: true, dependencies }));
      if (this.#options.dropTo) {
        chownSync(work, this.#options.dropTo.uid, this.#options.dropTo.gid);
        chownSync(join(work, "package.json"), this.#options.dropTo.uid, this.#options.dropTo.gid);
      }
      const error = await this.#npm(work, npmRoot);
      if (error) return this.#failed(work, error);
      rmSync(join(work, ".npm-cache"), { recursive: true, force: true });
      const modules = join(work, "node_modules");
      // A set whose packages have no files of their own still gets an (empty) directory to mount.
      mkdirSync(modules, { recursive: true });
      const bytes = this.#options.dropTo ? seal(work) : diskUsage(work);
      if (bytes > this.#options.maxBytes) {
        return this.#failed(work, {
          reason: "too-large",
          detail: `${Math.round(bytes / MiB)} MiB installed; the host caches at most ${Math.round(this.#options.maxBytes / MiB)} MiB`,
        });
      }
      const dir = join(root, key);
      if (existsSync(dir)) {
        // Another host sharing this directory finished the same set first.
        rmSync(work, { recursive: true, force: true });
      } else {
        renameSync(work, dir);
      }
      const entry: Entry = { key, dir, bytes, lastUsed: Date.now(), leases: 0 };
      this.#entries.set(key, entry);
      return { ok: true, entry };
    } catch (error) {
      return this.#failed(work, {
        reason: "failed",
        detail: `the host could not prepare the install: ${describe(error)}`,
      });
    } finally {
      this.#release();
    }
  }

  #failed(work: string, error: InstallError): InstallOutcome {
    this.#stats.failures++;
    void rm(work, { recursive: true, force: true }).catch(() => undefined);
    return { ok: false, error };
  }

  /** Runs npm in its sandbox; undefined on success, else the classified failure. */
  #npm(work: string, npmRoot: string): Promise<InstallError | undefined> {
    const env: Record<string, string> = {};
    for (const name of INSTALL_ENV) {
      const value = process.env[name];
      if (value) env[name] = value;
    }
    const { file, args } = installCommand({
      tools: this.#options.tools,
      nodeBinary: this.#options.nodeBinary,
      npmRoot,
      target: work,
      dropTo: this.#options.dropTo,
      layout: this.#options.layout,
      registry: this.#options.registry,
      env,
    });
    const output = new BoundedText(NPM_OUTPUT_BYTES);
    return new Promise((resolve) => {
      let timedOut = false;
      const child = spawn(file, args, { stdio: ["ignore", "pipe", "pipe"], env: {}, cwd: "/", detached: true });
      const kill = () => {
        try {
          // The group: sh, setpriv, prlimit and bwrap exec in turn; bwrap's init dies with its parent.
          if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
        } catch {
          // already gone
        }
      };
      this.#running.add(kill);
      const timer = setTimeout(() => {
        timedOut = true;
        kill();
      }, this.#options.installTimeoutMs);
      child.stdout.on("data", (chunk: Buffer) => output.push(chunk));
      child.stderr.on("data", (chunk: Buffer) => output.push(chunk));
      child.once("error", (error) => {
        clearTimeout(timer);
        this.#running.delete(kill);
        resolve({ reason: "unavailable", detail: `could not start npm: ${error.message}` });
      });
      child.once("close", (code) => {
        clearTimeout(timer);
        this.#running.delete(kill);
        if (timedOut) {
          resolve({ reason: "timeout", detail: `npm ran past ${this.#options.installTimeoutMs} ms and was stopped` });
        } else if (this.#closed) {
          resolve({ reason: "unavailable", detail: "the sandbox host is shutting down" });
        } else if (code === 0) {
          resolve(undefined);
        } else {
          // npm's own words go to the operator's log only (see the module comment).
          console.error(`[cordon-host] npm install failed (status ${code}):\n${output.text().slice(-4096)}`);
          resolve(classifyNpm(output.text(), code));
        }
      });
    });
  }

  #slot(): Promise<void> {
    if (this.#active < MAX_CONCURRENT_INSTALLS) {
      this.#active++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#queue.push(resolve));
  }

  #release(): void {
    const next = this.#queue.shift();
    if (next) next();
    else this.#active--;
  }

  /** Removes least recently used sets nobody leases until the cache fits in maxBytes again. */
  #evict(): void {
    let total = 0;
    for (const entry of this.#entries.values()) total += entry.bytes;
    if (total <= this.#options.maxBytes) return;
    const idle = [...this.#entries.values()]
      .filter((entry) => entry.leases === 0)
      .sort((a, b) => a.lastUsed - b.lastUsed);
    for (const entry of idle) {
      if (total <= this.#options.maxBytes) break;
      this.#entries.delete(entry.key);
      total -= entry.bytes;
      // Renamed first, so `<root>/<key>` never exists half-removed.
      const trash = join(
        this.#options.root,
        `${TRASH_PREFIX}${entry.key.slice(0, 16)}-${randomBytes(4).toString("hex")}`,
      );
      try {
        renameSync(entry.dir, trash);
        void rm(trash, { recursive: true, force: true }).catch(() => undefined);
      } catch {
        // Gone already (another host sharing the directory evicted it).
      }
    }
  }

  /**
   * Takes in the sets a previous host left (complete by construction: only a finished install is
   * renamed to its key), and removes leftovers of installs and evictions that host did not finish.
   */
  #adopt(): void {
    let names: string[];
    try {
      names = readdirSync(this.#options.root);
    } catch {
      return;
    }
    for (const name of names) {
      const path = join(this.#options.root, name);
      try {
        if (KEY.test(name)) {
          const bytes = diskUsage(path);
          this.#entries.set(name, { key: name, dir: path, bytes, lastUsed: statSync(path).mtimeMs, leases: 0 });
        } else if (name.startsWith(TRASH_PREFIX)) {
          void rm(path, { recursive: true, force: true }).catch(() => undefined);
        } else if (name.startsWith(INSTALL_PREFIX) && Date.now() - statSync(path).mtimeMs > STALE_INSTALL_MS) {
          void rm(path, { recursive: true, force: true }).catch(() => undefined);
        }
      } catch {
        // Raced with another host: leave it.
      }
    }
    this.#evict();
  }
}

/**
 * On a root host: makes an installed tree root's and read-only (directories 0555, files 0444, or 0555
 * if executable), so that not even the sandbox uid that npm ran as (and jobs run as) can change it,
 * whatever the mount; returns its size on disk. A non-root host runs npm and jobs as its own uid and
 * could not remove a tree it had made read-only, so there the read-only bind is the only protection.
 * Symbolic links are left as they are (npm's tarballs carry none; they resolve inside the sandbox).
 */
function seal(dir: string): number {
  let bytes = 0;
  const walk = (path: string) => {
    const stat = lstatSync(path);
    bytes += stat.blocks * 512;
    lchownSync(path, 0, 0);
    if (stat.isSymbolicLink()) return;
    if (stat.isDirectory()) for (const name of readdirSync(path)) walk(join(path, name));
    const executable = stat.isDirectory() || (stat.mode & 0o111) !== 0;
    chmodSync(path, executable ? 0o555 : 0o444);
  };
  walk(dir);
  return bytes;
}

function diskUsage(dir: string): number {
  let bytes = 0;
  const walk = (path: string) => {
    const stat = lstatSync(path);
    bytes += stat.blocks * 512;
    if (stat.isDirectory()) for (const name of readdirSync(path)) walk(join(path, name));
  };
  walk(dir);
  return bytes;
}

const REGISTRY_CODES =
  /^(E5\d\d|E429|E403|E401|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ESOCKETTIMEDOUT|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_\w+|CERT_\w+|DEPTH_ZERO_SELF_SIGNED_CERT|ERR_SSL_\w+)$/;

/** npm's own words are not passed on; only its error code and, for a missing package, the spec. */
export function classifyNpm(output: string, status: number | null): InstallError {
  // bwrap's own complaints (a cache directory the sandbox uid cannot reach, no user namespaces…).
  if (/^bwrap: /m.test(output)) return { reason: "unavailable", detail: "the install sandbox did not start" };
  const code = /npm error code (\w+)/.exec(output)?.[1];
  const missing =
    /npm error 404 +(?:The requested resource )?'([^'\s]{1,300})' (?:is not in this registry|could not be found)/.exec(
      output,
    )?.[1] ?? /npm error notarget No matching version found for (\S{1,300}?)\.?\s/.exec(output)?.[1];
  if (code === "E404" || code === "ETARGET") {
    return { reason: "not-found", detail: `${code}${missing ? `: ${missing.replace(/\.$/, "")}` : ""}` };
  }
  if (code && REGISTRY_CODES.test(code)) return { reason: "registry", detail: code };
  return { reason: "failed", detail: code ?? `npm exited with status ${status}` };
}

function describeInstall(error: InstallError): string {
  const what: Record<InstallError["reason"], string> = {
    "not-found": "a package or version is not in the registry",
    registry: "the registry could not be reached or answered an error",
    timeout: "the install took too long",
    "too-large": "the packages are too large",
    unavailable: "this host cannot install packages",
    failed: "npm failed",
  };
  return `${what[error.reason]} (${error.detail})`;
}

function failure(reason: InstallError["reason"], detail: string): InstallOutcome {
  return { ok: false, error: { reason, detail } };
}

function elapsed(started: number): number {
  return Math.round(performance.now() - started);
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
