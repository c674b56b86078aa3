/** Signal flags of a worker, pgrx's `SignalWakeFlags`. */

/** Which signals `attachSignalHandlers` turns into flags and latch wake-ups. Combine with `|`. */
export const SignalWakeFlags = Object.freeze({
  SIGHUP: 1,
  SIGTERM: 2,
  SIGINT: 4,
  SIGCHLD: 8,
} as const);

/** A combination of `SignalWakeFlags` values. */
export type SignalWakeFlags = number;

export type WorkerSignal = keyof typeof SignalWakeFlags;

export const WORKER_SIGNALS = Object.keys(SignalWakeFlags) as WorkerSignal[];

const ALL_FLAGS = Object.values(SignalWakeFlags).reduce((all, flag) => all | flag, 0);

/** The signals in `flags`; throws a TypeError naming the value when it holds anything else. */
export function signalsOf(flags: SignalWakeFlags): WorkerSignal[] {
  if (typeof flags !== "number" || !Number.isInteger(flags) || flags < 0 || (flags & ~ALL_FLAGS) !== 0) {
    throw new TypeError(
      `attachSignalHandlers: flags ${String(flags)} must combine SignalWakeFlags.SIGHUP, SIGTERM, SIGINT and SIGCHLD with |`,
    );
  }
  return WORKER_SIGNALS.filter((signal) => (flags & SignalWakeFlags[signal]) !== 0);
}
