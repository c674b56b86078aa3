/**
 * `Postmaster`: the programmatic postmaster of SPEC §2, a front over the shell (shell.ts) that does the
 * work. Only the contract is public; what the control socket and the launchers ask of the postmaster goes
 * to the shell, which no user code can reach.
 */
import { makeError } from "../errors.js";
import type { ShutdownMode, StatusReport } from "../status.js";
import { SHUTDOWN_MODES } from "../status.js";
import { resolveOptions, type PostmasterOptions } from "./options.js";
import { PostmasterShell } from "./shell.js";

export type { PostmasterOptions } from "./options.js";

export class Postmaster {
  readonly #shell: PostmasterShell;

  /** Validates every option (a `TypeError` naming option, value and rule); nothing starts until `start()`. */
  constructor(options: PostmasterOptions) {
    this.#shell = new PostmasterShell(resolveOptions(options));
  }

  /** Identifies this run of the postmaster; the handles of its dynamic workers carry it. */
  get postmasterId(): string {
    return this.#shell.postmasterId;
  }

  /** The postmaster's process id (this process). */
  get pid(): number {
    return process.pid;
  }

  /**
   * Loads every extension (running its `_PG_init`), creates shared memory, starts the workers whose start
   * time has come, opens the control socket and starts (or connects to) the database. Resolves once all of
   * that is done; rejects, with everything stopped again, if any of it fails.
   */
  start(): Promise<void> {
    return this.#shell.start();
  }

  /**
   * Shuts down as `pg_ctl stop -m MODE` (default fast) and resolves once every worker is gone and a managed
   * database is stopped. Calling it again with a stronger mode escalates (smart to fast or immediate, fast to
   * immediate); a milder one changes nothing. `status()` reports the mode asked for, or the stronger one.
   */
  async stop(mode: ShutdownMode = "fast"): Promise<void> {
    if (!SHUTDOWN_MODES.includes(mode)) {
      throw makeError(TypeError, "ERR_BGWORKER_INVALID_OPTION", `Postmaster.stop: mode ${String(mode)} must be one of ${SHUTDOWN_MODES.join(", ")}`, this.stop);
    }
    this.#shell.stop(mode);
    return this.#shell.stopped;
  }

  /**
   * As SIGHUP to `bgworker start` (and `bgworker reload`): logs `received SIGHUP, reloading configuration
   * files`, sends SIGHUP to every running worker and reloads a managed server's configuration. Stops nothing.
   */
  reload(): Promise<void> {
    return this.#shell.reload();
  }

  /** The postmaster row and one row per worker slot (SPEC §7). */
  status(): StatusReport {
    return this.#shell.status();
  }

  /** Calls `listener` after every change of state (worker, phase, shutdown); returns the unsubscribe function. */
  onChange(listener: () => void): () => void {
    return this.#shell.onChange(listener);
  }

  /** Why the postmaster shut itself down, if it did (e.g. shared memory could not be reinitialised). */
  get failure(): Error | undefined {
    return this.#shell.failure;
  }

  /** Resolves when the postmaster has shut down, whoever asked for it (a signal, `bgworker stop`, `stop()`). */
  get closed(): Promise<void> {
    return this.#shell.stopped;
  }
}
