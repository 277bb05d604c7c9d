/**
 * Source of the guard module loaded into every edge isolate (as `cordon-guard.js`).
 *
 * The instrumenter puts `tick()` at the top of every loop body and function body of the job. Once the
 * deadline has passed, `tick()` throws, and keeps throwing at every later checkpoint even if the job
 * catches the error, so a job can only run straight-line code after it trips. `arm` works once per
 * isolate: the harness arms it before the job module is evaluated, so the job cannot re-arm it.
 *
 * The clock is read every 256 ticks. Local workerd advances `Date.now()` during synchronous code;
 * production freezes it between I/O, where the runtime's own `cpuMs` limit stops the job instead.
 */
export const GUARD_SOURCE = String.raw`
const CHECK_EVERY = 256;
const now = Date.now.bind(Date);
let armed = false;
let deadline = Infinity;
let ticks = 0;
let nextCheck = CHECK_EVERY;
let expired = false;
const MESSAGE = "the job ran past its timeout";

class CordonTimeout extends Error {
  constructor(message) {
    super(message);
    this.name = "CordonTimeout";
  }
}

// Built ahead of time: near the stack limit constructing a new error can itself overflow, and the
// guard must still trip there (a job that recurses and catches RangeError lives at that depth). Made
// without calling the Error constructor, which in a fresh isolate cost ≈ 0.15 ms of CPU per job
// (measured in turns), paid by every job that never trips.
let tripped = Object.create(CordonTimeout.prototype, {
  name: { value: "CordonTimeout", writable: true, configurable: true },
  message: { value: MESSAGE, writable: true, configurable: true },
  stack: { value: "CordonTimeout: " + MESSAGE, writable: true, configurable: true },
});

export function arm(deadlineEpochMs) {
  if (armed) throw new Error("the guard is already armed");
  armed = true;
  deadline = deadlineEpochMs;
}

export function tick() {
  if (expired) throw tripped;
  ticks++;
  if (ticks < nextCheck) return;
  // nextCheck moves only after a successful clock read, so a read that overflows the stack is retried.
  const late = now() > deadline;
  nextCheck = ticks + CHECK_EVERY;
  if (!late) return;
  expired = true;
  try {
    tripped = new CordonTimeout(MESSAGE);
  } catch {
    // keep the prebuilt error; only its stack (the job's location) is lost
  }
  throw tripped;
}

/** Called by the harness when its own timer fires while the job awaits something that never settles. */
export function expire() {
  expired = true;
}

export function report() {
  return { ticks, tripped: expired, stack: expired ? String(tripped.stack) : null };
}
`;
