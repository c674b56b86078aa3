/**
 * The postmaster: loads extensions, serves a database, runs workers as processes, and carries out what
 * the state machine decides. Every decision is the machine's; this file only does the I/O around it.
 */
import { processRole, setProcessRole, withInit, type InitContext } from "../context.js";
import type { ControlHandler } from "../control/handler.js";
import { ControlServer } from "../control/server.js";
import { dispatchRequest } from "../control/dispatch.js";
import { requestFromValue } from "../control/protocol.js";
import { openDatabase } from "../database/index.js";
import type { ServedDatabase } from "../database/types.js";
import type { WorkerDefinition } from "../definition.js";
import { BackgroundWorkerStatus, errorToWire } from "../errors.js";
import type { HandleRef, HandleState } from "../launcher.js";
import { Logger } from "../log.js";
import { ensureTypeScript, importFrom, modulePath } from "../modules.js";
import type { FromRunner } from "../runtime/ipc.js";
import { cleanupStaleSegments, ShmemHost, type ShmemAttachment, type ShmemRequest } from "../shmem/index.js";
import type { Phase, ShutdownMode, StatusReport } from "../status.js";
import { SHUTDOWN_MODES } from "../status.js";
import { LocalLauncher } from "./local-launcher.js";
import { PostmasterMachine, type Action } from "./machine.js";
import { resolveOptions, type PostmasterOptions, type ResolvedOptions } from "./options.js";
import { Runner, Runners } from "./runners.js";

export type { PostmasterOptions } from "./options.js";

interface Waiter {
  readonly ref: HandleRef;
  readonly until: "startup" | "shutdown";
  readonly resolve: (state: HandleState) => void;
}

interface RunningWorker {
  readonly runner: Runner;
  readonly slot: number;
  readonly generation: number;
}

type Lifecycle = "new" | "starting" | "running" | "stopping" | "stopped";

export class Postmaster implements ControlHandler {
  /** Identifies this run of the postmaster in handles. */
  readonly postmasterId: string;
  readonly pid = process.pid;
  private readonly options: ResolvedOptions;
  private readonly logger: Logger;
  private readonly machine: PostmasterMachine;
  private readonly runners: Runners;
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly workers = new Map<number, RunningWorker>();
  private readonly waiters = new Set<Waiter>();
  private readonly shmemRequests: ShmemRequest[] = [];
  private readonly startupHooks: (() => void)[] = [];
  private shmem: ShmemHost | undefined;
  private shmemAttachment: ShmemAttachment | null = null;
  private database: ServedDatabase | undefined;
  private control: ControlServer | undefined;
  private lifecycle: Lifecycle = "new";
  private startedAt = 0;
  private applying = 0;
  private fatal: Error | undefined;
  private readonly stopped: Promise<void>;
  private markStopped!: () => void;
  private readonly removeShmemAtExit = (): void => this.shmem?.destroy();

  constructor(options: PostmasterOptions) {
    this.options = resolveOptions(options);
    this.postmasterId = `${process.pid.toString(36)}.${Date.now().toString(36)}`;
    this.logger = new Logger({ format: this.options.logFormat, ...(this.options.logSink === undefined ? {} : { sink: this.options.logSink }) });
    this.machine = new PostmasterMachine({
      postmasterId: this.postmasterId,
      maxWorkerProcesses: this.options.maxWorkerProcesses,
      restartBackoff: this.options.restartBackoff,
      databaseServed: this.options.database !== false,
      shutdownTimeoutMs: this.options.shutdownTimeoutMs,
    });
    this.runners = new Runners(this.options.spareRunners, {
      message: (runner, message) => this.onRunnerMessage(runner, message),
      output: (runner, stream, line) => this.logger.output(this.workerRef(runner), stream, line),
      exit: (runner, code, signal) => this.onRunnerExit(runner, code, signal),
    });
    this.stopped = new Promise((resolve) => (this.markStopped = resolve));
  }

  /**
   * Loads every extension (running its `_PG_init`), creates shared memory, starts the workers whose start
   * time has come, opens the control socket and starts (or connects to) the database. Resolves once all of
   * that is done; rejects, with everything stopped again, if any of it fails.
   */
  async start(): Promise<void> {
    if (this.lifecycle !== "new") throw new Error(`Postmaster.start: this postmaster is already ${this.lifecycle}`);
    const role = processRole<{ kind?: string }>();
    if (role?.kind === "postmaster" || role?.kind === "worker") {
      throw new Error(`Postmaster.start: this process is already a ${role.kind}; one postmaster per process`);
    }
    this.lifecycle = "starting";
    this.startedAt = Date.now();
    setProcessRole({ kind: "postmaster", launcher: new LocalLauncher(this) });
    try {
      await this.loadExtensions();
      this.createShmem();
      // Without a database there is nothing to wait for: every start time has come.
      if (this.options.database === false) this.apply(this.machine.setPhase("running"));
      this.runners.warm();
      this.apply(this.machine.start());
      if (this.options.socketPath !== false) {
        this.control = new ControlServer({ path: this.options.socketPath, handler: this, logger: this.logger });
        await this.control.listen();
      }
      if (this.options.database !== false) {
        this.database = openDatabase(this.options.database, { cwd: this.options.cwd, logger: this.logger });
        await this.database.start();
        this.logger.log("LOG", `serving ${this.database.description}`);
        this.database.watch((phase, reason) => this.onPhase(phase, reason));
      }
    } catch (error) {
      this.apply(this.machine.shutdown("immediate"));
      await this.stopped;
      throw error;
    }
    if (this.lifecycle === "starting") this.lifecycle = "running";
    this.logger.log("LOG", `postmaster ready: ${this.options.extensions.length} extension(s), ${this.machine.rows().length} static worker(s)`);
  }

  /**
   * Shuts down as `pg_ctl stop -m MODE` (default fast) and resolves once every worker is gone and a managed
   * database is stopped. Calling it again with a stronger mode escalates.
   */
  async stop(mode: ShutdownMode = "fast"): Promise<void> {
    if (!SHUTDOWN_MODES.includes(mode)) throw new TypeError(`Postmaster.stop: mode ${String(mode)} must be one of ${SHUTDOWN_MODES.join(", ")}`);
    if (this.lifecycle === "new") {
      this.lifecycle = "stopped";
      this.markStopped();
    } else if (this.lifecycle !== "stopped") {
      this.lifecycle = "stopping";
      this.apply(this.machine.shutdown(mode));
    }
    return this.stopped;
  }

  /** Why the postmaster shut itself down, if it did (e.g. shared memory could not be reinitialised). */
  get failure(): Error | undefined {
    return this.fatal;
  }

  /** Resolves when the postmaster has shut down, whoever asked for it (a signal, `bgworker stop`, `stop()`). */
  get closed(): Promise<void> {
    return this.stopped;
  }

  status(): StatusReport {
    return {
      postmaster: {
        pid: this.pid,
        phase: this.machine.currentPhase,
        database: this.database?.description ?? (this.options.database === false ? "none (--no-database)" : "starting"),
        uptimeMs: this.startedAt === 0 ? 0 : Date.now() - this.startedAt,
        shmemBytes: this.shmem?.size ?? 0,
        maxWorkerProcesses: this.options.maxWorkerProcesses,
        shutdown: this.machine.shuttingDown,
      },
      workers: this.machine.rows(),
    };
  }

  // ----- ControlHandler: what the control socket, workers and in-process handles ask ----------------

  launch(definition: WorkerDefinition): HandleRef {
    if (this.lifecycle !== "running" && this.lifecycle !== "starting") {
      throw new Error(`cannot register background worker "${definition.name}": the postmaster is ${this.lifecycle}`);
    }
    const { ref, actions } = this.machine.launch(definition);
    this.apply(actions);
    return ref;
  }

  state(ref: HandleRef): HandleState {
    return this.machine.handleState(ref);
  }

  waitForStartup(ref: HandleRef, callerPid: number): Promise<HandleState> {
    return this.wait(ref, "startup", callerPid);
  }

  waitForShutdown(ref: HandleRef, callerPid: number): Promise<HandleState> {
    return this.wait(ref, "shutdown", callerPid);
  }

  terminate(target: number | HandleRef): void {
    if (typeof target === "number") {
      const { found, actions } = this.machine.terminatePid(target);
      if (!found) throw new Error(`no background worker with pid ${target}`);
      this.apply(actions);
    } else {
      this.apply(this.machine.terminate(target));
    }
  }

  clientGone(pid: number): void {
    this.machine.releaseNotifications(pid);
  }

  /** How the log names a runner: its worker, or a spare that has not become one yet. */
  private workerRef(runner: Runner): { name: string; type: string; pid: number } {
    return { ...(runner.worker ?? { name: "spare runner", type: "bgworker runner" }), pid: runner.pid };
  }

  // ----- start-up -----------------------------------------------------------------------------------

  private async loadExtensions(): Promise<void> {
    await ensureTypeScript();
    for (const extension of this.options.extensions) {
      const path = modulePath(extension, this.options.cwd) ?? extension;
      let module: Record<string, unknown>;
      try {
        module = await importFrom(extension, this.options.cwd);
      } catch (error) {
        throw new Error(`extension "${extension}": cannot load ${path}: ${error instanceof Error ? error.message : String(error)}`);
      }
      const init = module._PG_init;
      if (typeof init !== "function") throw new Error(`extension "${extension}" exports no _PG_init() function`);
      const context: InitContext = {
        extension: path,
        registerStatic: (definition, startup) => {
          this.machine.registerStatic(definition);
          this.logger.log("DEBUG", `registered background worker "${definition.name}" from extension "${extension}"`);
          if (startup !== undefined) this.startupHooks.push(startup);
        },
        requestShmem: (requests) => {
          this.shmemRequests.push(...requests);
        },
      };
      await withInit(context, () => (init as () => unknown)());
    }
  }

  private createShmem(): void {
    if (this.shmemRequests.length === 0 && this.startupHooks.length === 0) return;
    const removed = cleanupStaleSegments();
    for (const name of removed) this.logger.log("LOG", `removed shared memory segment "${name}" left by a postmaster that is gone`);
    this.shmem = new ShmemHost(this.shmemRequests);
    process.once("exit", this.removeShmemAtExit);
    this.resetShmem();
  }

  /** Creates a fresh segment and runs the startup hooks: at start, and after a crash of a shared-memory worker. */
  private resetShmem(): void {
    if (this.shmem === undefined) return;
    this.shmemAttachment = this.shmem.create();
    for (const hook of this.startupHooks) {
      try {
        hook();
      } catch (error) {
        throw new Error(`a shared memory startup hook failed: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
  }

  // ----- events from the world ----------------------------------------------------------------------

  private onPhase(phase: Phase, reason: string): void {
    if (phase !== this.machine.currentPhase) this.logger.log("LOG", `database phase is now ${phase}: ${reason}`);
    this.apply(this.machine.setPhase(phase));
  }

  private onRunnerMessage(runner: Runner, message: FromRunner): void {
    const worker = this.workers.get(runner.pid);
    switch (message.t) {
      case "entered":
        if (worker !== undefined) this.apply(this.machine.entered(worker.slot, worker.generation, Date.now()));
        return;
      case "log":
        this.logger.fromWorker(this.workerRef(runner), message.level, message.message, message.detail);
        return;
      case "request":
        void this.answer(runner, message.request);
        return;
      case "ready":
      case "exiting":
        return;
    }
  }

  /** A worker's control request (dynamic workers and their handles), answered as for a socket client. */
  private async answer(runner: Runner, wire: unknown): Promise<void> {
    const parsed = typeof wire === "object" && wire !== null ? requestFromValue(wire as Record<string, unknown>) : undefined;
    if (parsed === undefined || !parsed.ok) {
      // Only this package's own runtime sends these; a malformed one is a bug worth a line, not a crash.
      this.logger.log("WARNING", `malformed request from background worker (PID ${runner.pid}): ${parsed?.ok === false ? parsed.error.message : "not an object"}`);
      if (parsed !== undefined && typeof parsed.id === "number") runner.send({ t: "reply", id: parsed.id, ok: false, error: errorToWire(parsed.error) });
      return;
    }
    const { id } = parsed.value;
    try {
      const result = await dispatchRequest(this, parsed.value, runner.pid);
      runner.send({ t: "reply", id: Number(id), ok: true, result });
    } catch (error) {
      runner.send({ t: "reply", id: Number(id), ok: false, error: errorToWire(error) });
    }
  }

  private onRunnerExit(runner: Runner, code: number | null, signal: string | null): void {
    const worker = this.workers.get(runner.pid);
    if (worker === undefined) {
      this.machine.releaseNotifications(runner.pid);
      return;
    }
    this.workers.delete(runner.pid);
    this.apply(this.machine.exited(runner.pid, code, signal, Date.now()));
  }

  // ----- carrying out the machine's decisions ---------------------------------------------------------

  private apply(actions: readonly Action[]): void {
    this.applying += 1;
    try {
      for (const action of actions) this.perform(action);
    } finally {
      this.applying -= 1;
    }
    if (this.applying === 0) this.settleWaiters();
  }

  private perform(action: Action): void {
    switch (action.type) {
      case "spawn":
        return this.spawn(action.slot, action.generation, action.definition);
      case "signal":
        try {
          process.kill(action.pid, action.signal);
        } catch {
          // Gone already; its exit event is on its way.
        }
        return;
      case "setTimer": {
        clearTimeout(this.timers.get(action.key));
        const timer = setTimeout(() => {
          this.timers.delete(action.key);
          this.apply(this.machine.timer(action.key));
        }, action.delayMs);
        this.timers.set(action.key, timer);
        return;
      }
      case "clearTimer":
        clearTimeout(this.timers.get(action.key));
        this.timers.delete(action.key);
        return;
      case "log":
        this.logger.log(action.level, action.message, action.worker === undefined ? {} : { worker: action.worker });
        return;
      case "resetShmem":
        try {
          this.resetShmem();
        } catch (error) {
          // As PostgreSQL when it cannot reinitialise after a crash: give up, stopping everything.
          this.fatal = error instanceof Error ? error : new Error(String(error));
          this.logger.log("FATAL", `${this.fatal.message}; shutting down`);
          void this.stop("immediate");
          return;
        }
        this.apply(this.machine.shmemReset());
        return;
      case "shutdownComplete":
        void this.finish();
        return;
    }
  }

  private spawn(slot: number, generation: number, definition: WorkerDefinition): void {
    let runner: Runner;
    try {
      runner = this.runners.take();
    } catch (error) {
      // PostgreSQL counts a failed fork as exit code 1; the machine applies that rule.
      this.apply(this.machine.spawnFailed(slot, generation, error instanceof Error ? error.message : String(error), Date.now()));
      return;
    }
    runner.worker = { name: definition.name, type: definition.type, pid: runner.pid };
    this.workers.set(runner.pid, { runner, slot, generation });
    runner.send({
      t: "start",
      definition,
      slot,
      generation,
      postmasterId: this.postmasterId,
      postmasterPid: process.pid,
      cwd: this.options.cwd,
      database: definition.spi && this.database !== undefined ? this.database.connectionParams() : null,
      shmem: definition.shmem ? this.shmemAttachment : null,
    });
    this.apply(this.machine.forked(slot, generation, runner.pid, Date.now()));
  }

  private wait(ref: HandleRef, until: Waiter["until"], callerPid: number): Promise<HandleState> {
    // Only the notify pid may wait, even on a worker that has already stopped (pgrx's Untracked); a handle
    // whose slot has been reused names no worker anyone can wait for: Stopped.
    const notifyPid = this.machine.notifyPidOf(ref);
    if (notifyPid === undefined) return Promise.resolve(this.machine.handleState(ref));
    if (notifyPid === 0 || notifyPid !== callerPid) return Promise.resolve({ status: BackgroundWorkerStatus.Untracked });
    return new Promise((resolve) => {
      this.waiters.add({ ref, until, resolve });
      this.settleWaiters();
    });
  }

  private settleWaiters(): void {
    for (const waiter of this.waiters) {
      const state = this.machine.handleState(waiter.ref);
      const done =
        state.status === BackgroundWorkerStatus.Stopped || (waiter.until === "startup" && state.status === BackgroundWorkerStatus.Started);
      if (done) {
        this.waiters.delete(waiter);
        waiter.resolve(state);
      }
    }
  }

  /**
   * Every worker is gone: stop the database, remove shared memory, then close the control socket, so that
   * a client (`bgworker stop`) sees its connection end only once the shutdown is complete.
   */
  private async finish(): Promise<void> {
    this.lifecycle = "stopping";
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.runners.close();
    // This runs inside apply(), before it settles the waiters: tell them now (e.g. that the last worker has
    // stopped), so a client waiting on a worker that stopped learns Stopped rather than PostmasterDied.
    this.settleWaiters();
    try {
      await this.database?.stop();
    } catch (error) {
      this.logger.log("WARNING", `during shutdown: ${error instanceof Error ? error.message : String(error)}`);
    }
    this.shmem?.destroy();
    process.removeListener("exit", this.removeShmemAtExit);
    this.settleWaiters();
    for (const waiter of this.waiters) waiter.resolve({ status: BackgroundWorkerStatus.PostmasterDied });
    this.waiters.clear();
    // Let the replies to those waits go out before the connections are dropped.
    await new Promise((resolve) => setImmediate(resolve));
    try {
      await this.control?.close();
    } catch (error) {
      this.logger.log("WARNING", `during shutdown: ${error instanceof Error ? error.message : String(error)}`);
    }
    setProcessRole(undefined);
    this.lifecycle = "stopped";
    this.logger.log("LOG", "postmaster shut down");
    this.markStopped();
  }
}
