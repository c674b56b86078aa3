/**
 * A parent-death signal for a worker process: Linux's `prctl(PR_SET_PDEATHSIG, signal)` through the
 * shared-memory addon (native/shm.cc), so that the kernel signals the worker the moment the process that
 * forked it dies, with no polling. Where the addon is not available (not Linux, no prebuilt binary for this
 * Node and no local build) it does nothing and says so by returning false: callers keep their own
 * postmaster-death detection as the fallback.
 */
import { constants } from "node:os";
import { shmAddonIfAvailable } from "./native.js";

/**
 * Asks the kernel to send `signal` to this process when its parent (the thread that forked it) exits.
 * `signal` is a signal name (`"SIGTERM"`) or number (1 to 64); `0` clears the setting. Returns true once it is
 * set, false when the addon is not available here (nothing was set). Throws a RangeError for an unknown
 * signal name or an out-of-range number.
 *
 * As prctl: it covers this process only (its children do not inherit it), an exec of a set-user-ID program
 * clears it, and if the parent is already gone when it is set no signal comes (check `process.ppid`
 * afterwards).
 */
export function parentDeathSignal(signal: NodeJS.Signals | number): boolean {
  const number = typeof signal === "number" ? signal : (constants.signals as Record<string, number | undefined>)[signal];
  if (number === undefined || !Number.isInteger(number) || number < 0 || number > 64) {
    throw new RangeError(`parentDeathSignal: ${JSON.stringify(signal)} is not a signal name or a number from 0 to 64`);
  }
  const addon = shmAddonIfAvailable();
  if (addon === undefined) return false;
  addon.setParentDeathSignal(number);
  return true;
}
