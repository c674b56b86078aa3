/**
 * The admission check for dynamic launches, PostgreSQL's `SanityCheckBackgroundWorker`: one function that
 * every launch path applies (the launcher in the caller's process, and the postmaster's dispatch for the
 * control socket and the workers' IPC channel alike), so no path can admit what another refuses. The
 * checks that depend on the postmaster's state at the moment (free slots, a served database, shutdown)
 * are the state machine's.
 */
import type { WorkerDefinition } from "./definition.js";
import { makeError } from "./errors.js";

export interface LaunchRequest {
  readonly definition: WorkerDefinition;
  /** The process asking: the launcher's own pid, or the pid the postmaster knows the caller by. */
  readonly callerPid: number;
  /** The builder's shared memory startup hook, if one was given (only the caller's side can see it). */
  readonly startup?: unknown;
}

/** Throws a coded TypeError when `launch` breaks a rule of dynamic registration. */
export function admitLaunch(launch: LaunchRequest): void {
  const { definition, callerPid, startup } = launch;
  if (startup !== undefined) {
    throw makeError(
      TypeError,
      "ERR_BGWORKER_STARTUP_HOOK",
      `loadDynamic: background worker "${definition.name}" has a shared memory startup hook, which runs in the ` +
        `postmaster and only for static workers: register it with load() in an extension's _PG_init`,
    );
  }
  // Notifications reach a process only through its own connection to the postmaster, so a launcher can ask
  // for itself or for no one.
  if (definition.notifyPid !== 0 && definition.notifyPid !== callerPid) {
    throw makeError(
      TypeError,
      "ERR_BGWORKER_NOTIFY_PID",
      `loadDynamic: notify pid ${definition.notifyPid} of background worker "${definition.name}" must be 0 or the ` +
        `launching process's pid ${callerPid}: only the launching process can be notified`,
    );
  }
}
