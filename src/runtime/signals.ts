/** Signal flags of a worker, pgrx's `SignalWakeFlags`. */
import { makeError } from "../errors.js";

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
    throw makeError(
      TypeError,
      "ERR_BGWORKER_INVALID_VALUE",
      `attachSignalHandlers: flags ${String(flags)} must combine SignalWakeFlags.SIGHUP, SIGTERM, SIGINT and SIGCHLD with |`,
    );
  }
  return WORKER_SIGNALS.filter((signal) => (flags & SignalWakeFlags[signal]) !== 0);
}

/**
 * Signals that mean nothing to a bgworker process, postmaster or worker, and must not take Node's default:
 * SIGUSR1 would start the inspector on 127.0.0.1:9229 (anyone local who reaches the port runs code as this
 * process's user), SIGUSR2 and the others would end the process, and a postmaster that ends that way leaves
 * its workers' segment, socket and managed server behind. PostgreSQL's postmaster ignores SIGPIPE, SIGALRM,
 * SIGTTIN, SIGTTOU and SIGXFSZ too; SIGVTALRM, SIGIO and SIGSTKFLT are never sent to it on purpose. A JS
 * listener replaces Node's default action; `--inspect` on the command line still opens the inspector. The
 * latch uses SIGURG, not SIGUSR1, so nothing of bgworker's own travels on these. SIGPROF, SIGTRAP and SIGSYS
 * are left alone: V8's profiler, debuggers and seccomp own them.
 */
export const IGNORED_SIGNALS = [
  "SIGUSR1",
  "SIGUSR2",
  "SIGPIPE",
  "SIGALRM",
  "SIGTTIN",
  "SIGTTOU",
  "SIGXFSZ",
  "SIGVTALRM",
  "SIGIO",
  "SIGSTKFLT",
] as const satisfies readonly NodeJS.Signals[];

const ignore = (): void => undefined;

/** Installs the no-op listeners of IGNORED_SIGNALS (plus `extra`); idempotent. */
export function ignoreSignals(extra: readonly NodeJS.Signals[] = []): void {
  for (const signal of [...IGNORED_SIGNALS, ...extra]) {
    if (!process.listeners(signal).includes(ignore)) process.on(signal, ignore);
  }
}
