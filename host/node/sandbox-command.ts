/**
 * The command line of one sandboxed job, built as data (no I/O but the layout probe) so it can be
 * read, logged and tested on its own:
 *
 *   sh -c JOIN_CGROUPS <cgroup dirs> --            # joins the job's cgroups, then execs the rest
 *     [setpriv --reuid U --regid G ...] --         # host is root: drop to an unprivileged uid
 *     prlimit --nofile --fsize --cpu [--nproc --as] --   # rlimits, inherited by everything below
 *     bwrap <namespaces, mounts, env> --
 *       /opt/node/bin/node <flags> /opt/cordon/harness.mjs
 *
 * Every process the job can start descends from that first `sh`, so all of them are in the cgroups
 * and under the rlimits, and none of them can raise a hard limit back.
 *
 * `installCommand` builds the other sandbox this host runs: npm installing a job's packages, with the
 * network but without the job, its code or anything of the host but what npm needs.
 */
import { existsSync, lstatSync, readlinkSync } from "node:fs";
import { delimiter, join } from "node:path";
import { JOB_NODE_FLAGS, PACKAGES_MOUNT } from "./protocol.ts";

export const SANDBOX_NODE = "/opt/node/bin/node";
export const SANDBOX_HARNESS = "/opt/cordon/harness.mjs";
export const SANDBOX_WORKSPACE = "/workspace";
/** The job's egress proxy socket, in the staging directory (bound at /workspace); harness.mjs forwards to it. */
export const EGRESS_SOCKET_FILE = "egress.sock";
/** Inside the sandbox's own network namespace: the harness listens here (see harness.mjs). */
export const EGRESS_PROXY_URL = "http://127.0.0.1:3128";
/** The fd the host passes to `bwrap --info-fd` (the sandbox init's host pid arrives on it). */
export const INFO_FD = 5;
/**
 * bwrap reads its options from this fd (`--args`), so the sandbox's /proc/1/cmdline (bwrap is its init)
 * shows no host paths.
 */
export const ARGS_FD = 6;
/** sh exits with this when it cannot join a cgroup: the sandbox never started. */
export const JOIN_FAILED_STATUS = 125;

/** `$$` joins each directory's group; the exec'd programs and all their descendants stay in it. */
const JOIN_CGROUPS =
  'while [ "$#" -gt 0 ] && [ "$1" != -- ]; do echo $$ > "$1/cgroup.procs" || exit ' +
  JOIN_FAILED_STATUS +
  '; shift; done; shift; exec "$@"';

/** Read-only system paths the Node binary needs (its shared libraries and the loader); no /etc, no /bin. */
const SYSTEM_PATHS = ["/usr/lib", "/usr/lib64", "/usr/lib32", "/lib", "/lib64", "/lib32"];

export interface Tools {
  sh: string;
  bwrap: string;
  prlimit: string;
  setpriv: string | undefined;
}

export interface Rlimits {
  /** RLIMIT_NOFILE */
  openFiles: number;
  /** RLIMIT_FSIZE, bytes */
  fileSize: number;
  /** RLIMIT_CPU soft limit, seconds (SIGXCPU); the hard limit is one second later (SIGKILL). */
  cpuSeconds: number;
  /** RLIMIT_NPROC, only when no pids cgroup is available (a host-wide backstop, see sandbox-job.ts). */
  processes: number | undefined;
  /** RLIMIT_AS, bytes, only when no memory cgroup is available. */
  addressSpace: number | undefined;
}

export interface SandboxPlan {
  tools: Tools;
  /** The host's own Node binary (real path), bound read-only at SANDBOX_NODE. */
  nodeBinary: string;
  harness: string;
  /** Host directory holding job.js, bound read-only at /workspace. */
  staging: string;
  cgroupDirs: string[];
  /** Set when the host runs as root: the sandbox runs as this host uid/gid instead. */
  dropTo: { uid: number; gid: number } | undefined;
  rlimits: Rlimits;
  writable: { path: string; sizeBytes: number }[];
  /** Host node_modules of the job's installed packages, bound read-only at PACKAGES_MOUNT. */
  packages: string | undefined;
  heapMb: number;
  /** bwrap arguments mounting SYSTEM_PATHS, from systemLayout(). */
  layout: string[];
}

/**
 * Absolute paths of the programs the runner needs; a missing one is reported, not thrown. Searched in
 * `searchPath` if given, else in PATH and the usual system directories.
 */
export function findTools(searchPath?: string): { tools: Tools | undefined; missing: string[] } {
  const path = searchPath ?? [process.env.PATH ?? "", "/usr/bin", "/bin", "/usr/sbin", "/sbin"].join(delimiter);
  const dirs = path.split(delimiter).filter(Boolean);
  const find = (name: string) => dirs.map((dir) => join(dir, name)).find((candidate) => existsSync(candidate));
  const sh = find("sh");
  const bwrap = find("bwrap");
  const prlimit = find("prlimit");
  const setpriv = find("setpriv");
  const missing = Object.entries({ sh, bwrap, prlimit })
    .filter(([, found]) => !found)
    .map(([name]) => name);
  if (!sh || !bwrap || !prlimit) return { tools: undefined, missing };
  return { tools: { sh, bwrap, prlimit, setpriv }, missing };
}

/** Mirrors the host's library layout: a symlink stays a symlink (merged /usr), a directory is bound. */
export function systemLayout(): string[] {
  const args: string[] = [];
  for (const path of SYSTEM_PATHS) {
    let stat;
    try {
      stat = lstatSync(path);
    } catch {
      continue;
    }
    if (stat.isSymbolicLink()) args.push("--symlink", readlinkSync(path), path);
    else if (stat.isDirectory()) args.push("--ro-bind", path, path);
  }
  return args;
}

export interface SandboxCommand {
  file: string;
  args: string[];
  /** NUL-terminated bwrap options, to be written to ARGS_FD. */
  bwrapOptions: string;
}

export function sandboxCommand(plan: SandboxPlan): SandboxCommand {
  const { tools, rlimits } = plan;
  const drop = plan.dropTo
    ? [
        tools.setpriv ?? "setpriv",
        `--reuid=${plan.dropTo.uid}`,
        `--regid=${plan.dropTo.gid}`,
        "--clear-groups",
        "--no-new-privs",
        "--",
      ]
    : [];
  const limits = [
    tools.prlimit,
    `--nofile=${rlimits.openFiles}:${rlimits.openFiles}`,
    `--fsize=${rlimits.fileSize}:${rlimits.fileSize}`,
    `--cpu=${rlimits.cpuSeconds}:${rlimits.cpuSeconds + 1}`,
    // No core dumps: a crashing job must not write its memory anywhere, nor reach a core_pattern pipe
    // helper on the host.
    "--core=0:0",
    ...(rlimits.processes === undefined ? [] : [`--nproc=${rlimits.processes}:${rlimits.processes}`]),
    ...(rlimits.addressSpace === undefined ? [] : [`--as=${rlimits.addressSpace}:${rlimits.addressSpace}`]),
    "--",
  ];
  const writable = [...plan.writable].sort((a, b) => a.path.length - b.path.length);
  const options = [
    // Every namespace: network (only lo), pid, ipc, uts, mount, cgroup, and user, which must be
    // explicit for --disable-userns (the job may not nest user namespaces to regain capabilities).
    "--unshare-all",
    "--unshare-user",
    "--disable-userns",
    "--die-with-parent",
    "--new-session",
    "--hostname",
    "cordon",
    ...["--uid", "65534", "--gid", "65534"],
    ...plan.layout,
    ...["--ro-bind", plan.nodeBinary, SANDBOX_NODE],
    ...["--ro-bind", plan.harness, SANDBOX_HARNESS],
    ...["--ro-bind", plan.staging, SANDBOX_WORKSPACE],
    // Its mount point is an empty directory in the staging directory (bwrap cannot create one in a
    // read-only bind).
    ...(plan.packages === undefined ? [] : ["--ro-bind", plan.packages, PACKAGES_MOUNT]),
    ...["--proc", "/proc"],
    ...["--dev", "/dev"],
    ...writable.flatMap(({ path, sizeBytes }) => ["--size", String(sizeBytes), "--tmpfs", path]),
    // bwrap's root and its /dev are tmpfs the sandbox user owns: without these the job could create
    // /etc, /bin… or files in /dev and /dev/shm, outside the writable paths and their size bounds.
    // (Device nodes stay writable on a read-only mount: /dev/null still works.)
    ...["--remount-ro", "/dev"],
    ...["--remount-ro", "/"],
    "--clearenv",
    ...["--setenv", "PATH", "/opt/node/bin"],
    ...["--setenv", "HOME", SANDBOX_WORKSPACE],
    ...["--setenv", "TZ", "UTC"],
    ...["--setenv", "LANG", "C.UTF-8"],
    ...["--setenv", "UV_THREADPOOL_SIZE", "4"],
    // The harness forwards this port to the job's egress proxy (egress-proxy.ts) and points Node's
    // fetch and http(s) at it. A convenience, not the boundary: nothing else is reachable.
    ...["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"].flatMap((name) => [
      "--setenv",
      name,
      EGRESS_PROXY_URL,
    ]),
    ...["--chdir", SANDBOX_WORKSPACE],
    ...["--info-fd", String(INFO_FD)],
  ];
  const bwrap = [
    tools.bwrap,
    ...["--args", String(ARGS_FD)],
    "--",
    SANDBOX_NODE,
    `--max-old-space-size=${plan.heapMb}`,
    ...JOB_NODE_FLAGS,
    SANDBOX_HARNESS,
  ];
  return {
    file: tools.sh,
    args: ["-c", JOIN_CGROUPS, "cordon-sandbox", ...plan.cgroupDirs, "--", ...drop, ...limits, ...bwrap],
    bwrapOptions: options.map((option) => `${option}\0`).join(""),
  };
}

export const INSTALL_NPM = "/opt/npm";
export const INSTALL_TARGET = "/install";
/**
 * What npm needs of the host's /etc: name resolution and CA certificates (a registry behind a
 * TLS-intercepting proxy needs its CA). Whichever exist are bound read-only; nothing else of /etc is.
 */
const INSTALL_HOST_FILES = [
  "/etc/resolv.conf",
  "/etc/hosts",
  "/etc/nsswitch.conf",
  "/etc/host.conf",
  "/etc/gai.conf",
  "/etc/ssl",
  "/etc/ca-certificates",
  "/etc/pki",
  "/usr/share/ca-certificates",
];
/** Host environment passed to npm: proxies and CA bundles only (paths are bound if outside INSTALL_HOST_FILES). */
export const INSTALL_ENV = [
  "HTTPS_PROXY",
  "https_proxy",
  "HTTP_PROXY",
  "http_proxy",
  "NO_PROXY",
  "no_proxy",
  "NODE_EXTRA_CA_CERTS",
  "SSL_CERT_FILE",
  "SSL_CERT_DIR",
];
const CA_PATH_VARIABLES = new Set(["NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "SSL_CERT_DIR"]);
/** The install's own /tmp (npm's HOME); npm's download cache goes to the target directory instead. */
const INSTALL_TMP_BYTES = 64 * 1024 * 1024;
/** RLIMIT_FSIZE for npm: no single file of a package is anywhere near this. */
const INSTALL_MAX_FILE_BYTES = 512 * 1024 * 1024;
/** RLIMIT_NOFILE for npm, which opens many files and sockets at once. */
const INSTALL_OPEN_FILES = 4096;

export interface InstallPlan {
  tools: Tools;
  nodeBinary: string;
  /** The host's npm package directory (the one holding bin/npm-cli.js), bound read-only at INSTALL_NPM. */
  npmRoot: string;
  /** Host directory holding package.json; npm writes node_modules and its download cache there. */
  target: string;
  dropTo: { uid: number; gid: number } | undefined;
  layout: string[];
  registry: string;
  /** The host's values of INSTALL_ENV that are set. */
  env: Record<string, string>;
}

/**
 * npm in a bubblewrap sandbox of its own: the host's network (it must reach the registry), but only
 * the target directory writable, and none of the host's files but the system libraries, Node, npm and
 * INSTALL_HOST_FILES. Install scripts are disabled (`--ignore-scripts`, which also covers dependencies
 * and the implicit node-gyp build), so no package code runs; the sandbox is for npm's own handling of
 * what the registry sends (a `file:` dependency of a hostile package sees an empty filesystem).
 * Configuration comes only from these flags: no user or global npmrc (a host token stays out of reach).
 */
export function installCommand(plan: InstallPlan): SandboxCommand {
  const { tools } = plan;
  const drop = plan.dropTo
    ? [
        tools.setpriv ?? "setpriv",
        `--reuid=${plan.dropTo.uid}`,
        `--regid=${plan.dropTo.gid}`,
        "--clear-groups",
        "--no-new-privs",
        "--",
      ]
    : [];
  const limits = [
    tools.prlimit,
    `--nofile=${INSTALL_OPEN_FILES}:${INSTALL_OPEN_FILES}`,
    `--fsize=${INSTALL_MAX_FILE_BYTES}:${INSTALL_MAX_FILE_BYTES}`,
    "--core=0:0",
    "--",
  ];
  const hostFiles = new Set(INSTALL_HOST_FILES.filter((path) => existsSync(path)));
  for (const [name, value] of Object.entries(plan.env)) {
    if (!CA_PATH_VARIABLES.has(name) || !value.startsWith("/") || !existsSync(value)) continue;
    if (![...hostFiles].some((bound) => value === bound || value.startsWith(`${bound}/`))) hostFiles.add(value);
  }
  const home = "/tmp";
  const options = [
    "--unshare-all",
    "--share-net",
    "--unshare-user",
    "--disable-userns",
    "--die-with-parent",
    "--new-session",
    ...["--uid", "65534", "--gid", "65534"],
    ...plan.layout,
    ...["--ro-bind", plan.nodeBinary, SANDBOX_NODE],
    ...["--ro-bind", plan.npmRoot, INSTALL_NPM],
    ...[...hostFiles].flatMap((path) => ["--ro-bind", path, path]),
    ...["--bind", plan.target, INSTALL_TARGET],
    ...["--proc", "/proc"],
    ...["--dev", "/dev"],
    ...["--size", String(INSTALL_TMP_BYTES), "--tmpfs", home],
    ...["--remount-ro", "/"],
    "--clearenv",
    ...["--setenv", "PATH", "/opt/node/bin"],
    ...["--setenv", "HOME", home],
    ...Object.entries(plan.env).flatMap(([name, value]) => ["--setenv", name, value]),
    ...["--chdir", INSTALL_TARGET],
  ];
  const npm = [
    SANDBOX_NODE,
    `${INSTALL_NPM}/bin/npm-cli.js`,
    "install",
    "--ignore-scripts",
    "--no-audit",
    "--no-fund",
    "--no-bin-links",
    "--no-package-lock",
    "--no-update-notifier",
    "--logs-max=0",
    "--loglevel=error",
    "--fetch-retries=1",
    `--registry=${plan.registry}`,
    `--cache=${INSTALL_TARGET}/.npm-cache`,
    // Paths that do not exist: npm then reads no npmrc at all (it refuses /dev/null twice).
    `--userconfig=${home}/no-user-npmrc`,
    `--globalconfig=${home}/no-global-npmrc`,
  ];
  return {
    file: tools.sh,
    args: ["-c", 'exec "$@"', "cordon-install", ...drop, ...limits, tools.bwrap, ...options, "--", ...npm],
    bwrapOptions: "",
  };
}
