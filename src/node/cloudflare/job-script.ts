/**
 * The shell side of a node job in a Cloudflare Sandbox container: one `bash -c` script, run as root by
 * the container's control server, that seals the job's files, starts `node harness.mjs` under the limits
 * the container can enforce, and prints one result line the adapter parses.
 *
 * The harness is the local home's own `host/node/harness.mjs`, unchanged: it reads its setup from fd 4
 * and writes records to fd 3. Here both are FIFOs in a root-only directory instead of the host's
 * sockets: fd 4 is fed from the setup file (deleted once open, before the job starts), and fd 3 is read
 * into a file by a root process, up to a cap. stdout and stderr are FIFOs too, each kept up to a cap and
 * counted beyond it, so a chatty job never blocks. (Pipes, not files, because the harness reads fd 4
 * through a net.Socket, which takes pipes and sockets only, and because RLIMIT_FSIZE would cut a record
 * written to a file the job's process writes itself.)
 *
 * The command runs this chain (each link execs the next; root up to setpriv, uid 65534 after it):
 *
 *   choom -n 1000 --                                # the OOM killer's first choice (see below)
 *     timeout --foreground -s KILL <timeoutMs>      # wall clock; waits for node, so its CPU is counted
 *       [unshare --net -- bash -c "ip link set lo up; exec …"]   # the job's own network namespace
 *         setpriv --reuid=65534 --regid=65534 --clear-groups --no-new-privs --
 *           prlimit --nofile --fsize --cpu --core=0 --nproc --
 *             env -i PATH=… HOME=/workspace TZ=UTC LANG=C.UTF-8 UV_THREADPOOL_SIZE=4
 *               node --max-old-space-size=<memoryMb> <JOB_NODE_FLAGS> harness.mjs
 *
 * Every value comes in through the exec's environment (CORDON_*), never spliced into the script, so the
 * command is a constant string. No single quote may appear in SCRIPT (it is single-quoted for the SDK's
 * shell); jobCommand() checks that.
 *
 * Only what a root process observed goes into the result: the exit status, bash's `time` (wall clock and
 * the CPU of node and the children it waited for), the kernel's OOM-kill counter, a file count, and which
 * limit the guard stopped. The records, stdout and stderr travel base64-encoded and are parsed by the
 * adapter as untrusted input.
 */

import { JOB_NODE_FLAGS } from "../protocol";

/** Paths inside the container image (see container/Dockerfile). */
export const CONTAINER_PATHS = {
  /** The harness imports `file:///workspace/job.js`, as in the local sandbox. */
  workspace: "/workspace",
  jobFile: "/workspace/job.js",
  /** Root-only: the setup file, the FIFOs and the measurements. The job never sees this directory. */
  privateDir: "/var/lib/cordon",
  setupFile: "/var/lib/cordon/setup.json",
  harness: "/opt/cordon/harness.mjs",
  node: "/usr/local/bin/node",
} as const;

/** The line of the script's stdout that carries the result, followed by one JSON object. */
export const RESULT_MARKER = "CORDON-RESULT ";

/** The script exits with this when the container cannot run the job at all (a missing tool, a bad path). */
export const SETUP_FAILED_STATUS = 125;

/** The uid and gid the job runs as; nothing else in the container uses them, so counting by uid is per job. */
export const JOB_UID = 65534;

export interface JobPlan {
  timeoutMs: number;
  /** RLIMIT_CPU soft limit in whole seconds (SIGXCPU); the hard limit is one second later (SIGKILL). */
  cpuSeconds: number;
  memoryMb: number;
  maxFileSize: number;
  maxFileDescriptors: number;
  /** RLIMIT_NPROC for the job's uid: a backstop that counts threads; the guard counts processes. */
  maxTasks: number;
  /** Processes of the job's uid allowed at once: its own Node process plus maxSubprocesses. */
  maxProcesses: number;
  maxFiles: number;
  writable: readonly string[];
  /** Bytes of records, stdout and stderr brought back; the rest is counted and discarded. */
  recordsCapBytes: number;
  streamCapBytes: number;
  /** How often the guard counts the job's processes and files, in ms. */
  pollMs: number;
  isolateNetwork: boolean;
  harness: string;
  node: string;
}

/**
 * Notes for a reader of the script:
 * - The descriptors the control server left open are closed first, so the job inherits only 0–4.
 * - /tmp, /var/tmp, /dev/shm and the like lose their write bit for others (the image has no other
 *   world-writable path: see container/Dockerfile); then each writable path is created with mode 1777
 *   (sticky, like /tmp). An existing directory other than /tmp and /var/tmp is refused rather than
 *   opened up to the job.
 * - oom_score_adj=1000 makes the job the OOM killer's first choice, so an out-of-memory container loses
 *   the job, not its control server, and /proc/vmstat's oom_kill counter says so.
 * - `head -c` reads no more than it keeps, so the count of the discarded rest (`wc -c`) is exact.
 */
const SCRIPT = String.raw`
set -u
shopt -s globstar dotglob nullglob
d="$CORDON_PRIVATE_DIR"
fail() { echo "cordon: $*" >&2; exit ${SETUP_FAILED_STATUS}; }
for fd in $(ls /proc/$$/fd); do
  case "$fd" in 0|1|2|255) ;; *) eval "exec $fd>&-" ;; esac
done
for tool in timeout setpriv prlimit choom pkill cat head wc base64 mkfifo chmod chown; do
  command -v "$tool" >/dev/null || fail "$tool is missing from the container image"
done
[ -x "$CORDON_NODE" ] || fail "no Node binary at $CORDON_NODE"
[ -r "$CORDON_HARNESS" ] || fail "no harness at $CORDON_HARNESS"
mkdir -p "$d" && chown 0:0 "$d" && chmod 0700 "$d" || fail "cannot prepare $d"
[ -f "$d/setup.json" ] && [ -f "$CORDON_JOB_FILE" ] || fail "the job files were not written"
chown 0:0 "$CORDON_WORKSPACE" "$CORDON_JOB_FILE" && chmod 0755 "$CORDON_WORKSPACE" && chmod 0444 "$CORDON_JOB_FILE" ||
  fail "cannot seal $CORDON_WORKSPACE"
for p in /tmp /var/tmp /dev/shm /run/lock /dev/mqueue; do
  [ -d "$p" ] && chmod 0755 "$p" 2>/dev/null
done
for p in $CORDON_WRITABLE; do
  case "$p" in
    /tmp|/var/tmp) ;;
    *) [ -e "$p" ] && fail "cannot make $p writable: it already exists in the container (only /tmp, /var/tmp and new paths can be)" ;;
  esac
  mkdir -p "$p" && chmod 1777 "$p" || fail "cannot create the writable path $p"
done
set -- timeout --foreground -s KILL "$CORDON_TIMEOUT"
if [ "$CORDON_ISOLATE_NETWORK" = 1 ]; then
  command -v unshare >/dev/null && command -v ip >/dev/null || fail "unshare and ip are needed to isolate the network of the job"
  unshare --net -- true 2>/dev/null ||
    fail "cannot give the job its own network namespace (unshare --net needs CAP_SYS_ADMIN in the container)"
  set -- "$@" unshare --net -- bash -c "ip link set lo up || exit ${SETUP_FAILED_STATUS}; exec \"\$@\"" cordon-network
fi
set -- "$@" setpriv "--reuid=${JOB_UID}" "--regid=${JOB_UID}" --clear-groups --no-new-privs -- \
  prlimit "--nofile=$CORDON_NOFILE:$CORDON_NOFILE" "--fsize=$CORDON_FSIZE:$CORDON_FSIZE" \
  "--cpu=$CORDON_CPU:$((CORDON_CPU + 1))" --core=0:0 "--nproc=$CORDON_NPROC:$CORDON_NPROC" -- \
  env -i PATH=/usr/local/bin:/usr/bin:/bin "HOME=$CORDON_WORKSPACE" TZ=UTC LANG=C.UTF-8 UV_THREADPOOL_SIZE=4 \
  "$CORDON_NODE" "--max-old-space-size=$CORDON_HEAP_MB" ${JOB_NODE_FLAGS.map((flag) => `"${flag}"`).join(" ")} "$CORDON_HARNESS"

oom_kills() {
  local key value
  while read -r key value; do [ "$key" = oom_kill ] && { echo "$value"; return; }; done </proc/vmstat
  echo 0
}
# The guard runs every CORDON_POLL seconds for the whole job, so it uses only shell builtins (no fork;
# it waits with read -t on a FIFO nobody writes): a process or file not owned by root belongs to the
# job, the only other user in the container.
count_processes() {
  local p
  processes=0
  for p in /proc/[0-9]*; do [ -O "$p" ] || processes=$((processes + 1)); done
}
count_files() {
  local p f
  files=0
  for p in $CORDON_WRITABLE; do
    for f in "$p"/**; do
      [ "$f" = "$p/" ] && continue
      if [ -L "$f" ] || [ ! -O "$f" ]; then
        files=$((files + 1))
        [ "$files" -ge "$1" ] && return
      fi
    done
  done
}
stop() { echo "$1" >"$d/stopped"; pkill -KILL -u ${JOB_UID}; }
guard() {
  exec 5<>"$d/tick.pipe"
  while :; do
    read -r -t "$CORDON_POLL" -u 5 _
    count_processes
    [ "$processes" -gt "$CORDON_MAX_PROCESSES" ] && { stop processes; return; }
    count_files $((CORDON_MAX_FILES + 1))
    [ "$files" -gt "$CORDON_MAX_FILES" ] && { stop files; return; }
  done
}
bounded() { head -c "$2" >"$d/$1"; wc -c >"$d/$1.rest"; }
total() { echo $(($(wc -c <"$d/$1" 2>/dev/null || echo 0) + $(cat "$d/$1.rest" 2>/dev/null || echo 0))); }

cd "$CORDON_WORKSPACE" || fail "cannot enter $CORDON_WORKSPACE"
rm -f "$d/stopped" "$d/time" "$d"/*.pipe
mkfifo -m 0600 "$d/setup.pipe" "$d/records.pipe" "$d/stdout.pipe" "$d/stderr.pipe" "$d/tick.pipe" ||
  fail "cannot create the pipes of the job"
cat <"$d/setup.json" >"$d/setup.pipe" &
exec 4<"$d/setup.pipe" && rm -f "$d/setup.json" || fail "cannot open the setup of the job"
bounded records "$CORDON_RECORDS_CAP" <"$d/records.pipe" &
r1=$!
bounded stdout "$CORDON_STREAM_CAP" <"$d/stdout.pipe" &
r2=$!
bounded stderr "$CORDON_STREAM_CAP" <"$d/stderr.pipe" &
r3=$!
before=$(oom_kills)
guard &
guard=$!
TIMEFORMAT="%3R %3U %3S"
{ time choom -n 1000 -- "$@" 0</dev/null 1>"$d/stdout.pipe" 2>"$d/stderr.pipe" 3>"$d/records.pipe"; } 2>"$d/time"
status=$?
exec 4<&-
kill "$guard" 2>/dev/null
wait "$guard" 2>/dev/null
for _ in 1 2 3 4 5 6 7 8 9 10; do pkill -KILL -u ${JOB_UID} || break; sleep 0.05; done
wait "$r1" "$r2" "$r3"
after=$(oom_kills)
count_files 100001
stopped=""
[ -f "$d/stopped" ] && read -r stopped <"$d/stopped"
times="0.000 0.000 0.000"
while read -r line; do
  case "$line" in [0-9]*.[0-9][0-9][0-9]\ [0-9]*.[0-9][0-9][0-9]\ [0-9]*.[0-9][0-9][0-9]) times="$line" ;; esac
done <"$d/time"
read -r wall user sys <<<"$times"
ms() { local seconds fraction; IFS=. read -r seconds fraction <<<"$1"; echo $((10#$seconds * 1000 + 10#$fraction)); }
printf "%s{\"status\":%d,\"wallMs\":%d,\"cpuMs\":%d,\"oomKills\":%d,\"files\":%d,\"stopped\":\"%s\"" \
  "${RESULT_MARKER}" "$status" "$(ms "$wall")" $(($(ms "$user") + $(ms "$sys"))) $((after - before)) "$files" "$stopped"
for stream in records stdout stderr; do
  printf ",\"%s\":{\"bytes\":%d,\"base64\":\"" "$stream" "$(total "$stream")"
  base64 -w0 <"$d/$stream" 2>/dev/null
  printf "\"}"
done
printf "}\n"
`;

/** The exec's command: a constant, so nothing from the request can reach a shell parser. */
export function jobCommand(): string {
  if (SCRIPT.includes("'")) throw new Error("the job script must not contain a single quote");
  return `bash -c '${SCRIPT}' cordon-job`;
}

/** The script's parameters, passed as the exec's environment. */
export function jobEnvironment(plan: JobPlan): Record<string, string> {
  return {
    CORDON_PRIVATE_DIR: CONTAINER_PATHS.privateDir,
    CORDON_WORKSPACE: CONTAINER_PATHS.workspace,
    CORDON_JOB_FILE: CONTAINER_PATHS.jobFile,
    CORDON_HARNESS: plan.harness,
    CORDON_NODE: plan.node,
    CORDON_TIMEOUT: `${(plan.timeoutMs / 1000).toFixed(3)}s`,
    CORDON_CPU: String(plan.cpuSeconds),
    CORDON_HEAP_MB: String(plan.memoryMb),
    CORDON_FSIZE: String(plan.maxFileSize),
    CORDON_NOFILE: String(plan.maxFileDescriptors),
    CORDON_NPROC: String(plan.maxTasks),
    CORDON_MAX_PROCESSES: String(plan.maxProcesses),
    CORDON_MAX_FILES: String(plan.maxFiles),
    // The protocol allows only [A-Za-z0-9._-] path segments, so a space separates them unambiguously.
    CORDON_WRITABLE: plan.writable.join(" "),
    CORDON_RECORDS_CAP: String(plan.recordsCapBytes),
    CORDON_STREAM_CAP: String(plan.streamCapBytes),
    CORDON_POLL: (plan.pollMs / 1000).toFixed(3),
    CORDON_ISOLATE_NETWORK: plan.isolateNetwork ? "1" : "0",
  };
}
