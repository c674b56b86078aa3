/**
 * `Postmaster`: the programmatic postmaster of SPEC §2, a front over the shell (shell.ts) that does the
 * work. Only the contract is public; what the control socket and the launchers ask of the postmaster goes
 * to the shell, which no user code can reach.
 *
 * The shell (the state machine, runner pool, database, control socket) is loaded by `start()`, not by
 * `import "bgworker"`: a worker imports this package too, and should pay only for what a worker uses.
 */
import { makeError } from "../errors.js";
import type { ShutdownMode, StatusReport } from "../status.js";
import { SHUTDOWN_MODES } from "../status.js";
import { resolveOptions, type PostmasterOptions, type ResolvedOptions } from "./options.js";
import type { PostmasterShell } from "./shell.js";

export type { PostmasterOptions } from "./options.js";

export class Postmaster {
  readonly #options: ResolvedOptions;
  readonly #postmasterId = `${process.pid.toString(36)}.${Date.now().toString(36)}`;
  #shell: PostmasterShell | undefined;
  #loading: Promise<PostmasterShell> | undefined;
  /** Listeners given before the shell was loaded; handed to it when it is. */
  readonly #earlyListeners = new Map<() => void, () => void>();
  readonly #closed: Promise<void>;
  #markClosed!: () => void;

  /** Validates every option (a `TypeError` naming option, value and rule); nothing starts until `start()`. */
  constructor(options: PostmasterOptions) {
    this.#options = resolveOptions(options);
    this.#closed = new Promise((resolve) => (this.#markClosed = resolve));
  }

  /** Identifies this run of the postmaster; the handles of its dynamic workers carry it. */
  get postmasterId(): string {
    return this.#postmasterId;
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
  async start(): Promise<void> {
    return (await this.#core()).start();
  }

  #core(): Promise<PostmasterShell> {
    this.#loading ??= import("./shell.js").then(({ PostmasterShell }) => {
      const shell = new PostmasterShell(this.#options, this.#postmasterId);
      for (const listener of this.#earlyListeners.keys()) this.#earlyListeners.set(listener, shell.onChange(listener));
      void shell.stopped.then(() => this.#markClosed());
      this.#shell = shell;
      return shell;
    });
    return this.#loading;
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
    // Applied before this returns when the postmaster has started, so that status() reports it at once.
    const shell = this.#shell ?? (await this.#core());
    shell.stop(mode);
    return shell.stopped;
  }

  /**
   * As SIGHUP to `bgworker start` (and `bgworker reload`): logs `received SIGHUP, reloading configuration
   * files`, sends SIGHUP to every running worker and reloads a managed server's configuration. Stops nothing.
   */
  async reload(): Promise<void> {
    if (this.#shell === undefined) throw makeError(Error, "ERR_BGWORKER_POSTMASTER_STATE", "cannot reload: the postmaster is new");
    return this.#shell.reload();
  }

  /** The postmaster row and one row per worker slot (SPEC §7). */
  status(): StatusReport {
    if (this.#shell !== undefined) return this.#shell.status();
    // Not started: the rows a new shell would give.
    return {
      postmaster: {
        pid: process.pid,
        phase: "starting",
        phaseReason: null,
        database: this.#options.database === false ? "none (--no-database)" : "starting",
        uptimeMs: 0,
        shmemBytes: 0,
        maxWorkerProcesses: this.#options.maxWorkerProcesses,
        spares: { count: 0, ready: 0, target: this.#options.spareRunners, max: this.#options.maxSpareRunners, pssBytes: 0 },
        shutdown: null,
      },
      workers: [],
    };
  }

  /** Calls `listener` after every change of state (worker, phase, shutdown); returns the unsubscribe function. */
  onChange(listener: () => void): () => void {
    if (this.#shell !== undefined) return this.#shell.onChange(listener);
    this.#earlyListeners.set(listener, () => undefined);
    return () => {
      const unsubscribe = this.#earlyListeners.get(listener);
      this.#earlyListeners.delete(listener);
      unsubscribe?.();
    };
  }

  /** Why the postmaster shut itself down, if it did (e.g. shared memory could not be reinitialised). */
  get failure(): Error | undefined {
    return this.#shell?.failure;
  }

  /** Resolves when the postmaster has shut down, whoever asked for it (a signal, `bgworker stop`, `stop()`). */
  get closed(): Promise<void> {
    return this.#closed;
  }
}
