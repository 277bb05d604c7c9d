/** What a node job's exit status says, in both homes (the local host's sandbox, the container). */

/** Node's own exit status when the promise it awaits at top level can never settle. */
const UNSETTLED_AWAIT_STATUS = 13;

export function describeExitStatus(status: number | null): string {
  if (status === UNSETTLED_AWAIT_STATUS) {
    return "exit status 13: the job awaited a promise that nothing could settle, with no timer or I/O pending, so Node ended it";
  }
  return `exit status ${status}`;
}
