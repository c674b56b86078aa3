/**
 * The role of a worker process: what its code may ask about itself. The runner creates it once; every
 * change to it goes through its own methods (signals delivered, flags read, the session reported), so the
 * runner and `BackgroundWorker` never write each other's fields. Whether the worker is connected is not kept
 * here: the SPI session (spi.ts) is its one record.
 */
import type { Launcher } from "../launcher.js";
import type { LogLevel } from "../log.js";
import type { StartMessage } from "./ipc.js";
import type { Latch } from "./latch.js";
import type { WorkerSignal } from "./signals.js";

export interface WorkerRoleHooks {
  postmasterAlive(): boolean;
  log(level: LogLevel, message: string, detail?: string): void;
  /** Logs at FATAL and ends the worker with exit code 1, as PostgreSQL's `ereport(FATAL)`. */
  fatal(message: string, detail?: string): never;
  /** Tells the postmaster the server process id of the worker's database session. */
  sessionOpened(backendPid: number): void;
}

export class WorkerRole {
  readonly kind = "worker";
  readonly start: StartMessage;
  readonly latch: Latch;
  /** Dynamic launches and handles from inside this worker go through the postmaster over IPC. */
  readonly launcher: Launcher;
  readonly #hooks: WorkerRoleHooks;
  /** Signals turned into flags by `attachSignalHandlers`; the others keep their default behaviour. */
  readonly #attached = new Set<WorkerSignal>();
  /** Pending flags, read and cleared by the `*Received()` calls. */
  readonly #received = new Set<WorkerSignal>();

  constructor(start: StartMessage, latch: Latch, launcher: Launcher, hooks: WorkerRoleHooks) {
    this.start = start;
    this.latch = latch;
    this.launcher = launcher;
    this.#hooks = hooks;
  }

  postmasterAlive(): boolean {
    return this.#hooks.postmasterAlive();
  }

  log(level: LogLevel, message: string, detail?: string): void {
    this.#hooks.log(level, message, detail);
  }

  fatal(message: string, detail?: string): never {
    return this.#hooks.fatal(message, detail);
  }

  attach(signals: Iterable<WorkerSignal>): void {
    for (const signal of signals) this.#attached.add(signal);
  }

  /**
   * A signal arrived. An attached one sets its flag and the latch (SIGTERM also ends latch waits); true when
   * it was attached, false when its default action applies.
   */
  deliver(signal: WorkerSignal): boolean {
    if (!this.#attached.has(signal)) return false;
    this.#received.add(signal);
    if (signal === "SIGTERM") this.latch.stop("terminate");
    this.latch.set();
    return true;
  }

  /** Whether `signal` arrived since the last call; reading clears it. */
  take(signal: WorkerSignal): boolean {
    const was = this.#received.has(signal);
    this.#received.delete(signal);
    return was;
  }

  sessionOpened(backendPid: number): void {
    this.#hooks.sessionOpened(backendPid);
  }
}
