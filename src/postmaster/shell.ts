/**
 * The postmaster's shell: loads extensions, serves a database, runs workers as processes, and carries out
 * what the state machine decides. Every decision and every piece of worker state is the machine's; this
 * file feeds it events through one queue and performs the actions it returns, so the machine is never
 * entered while its actions are being carried out. `Postmaster` (postmaster.ts) is the public front.
 */
import { ClusterShell, type ClusterStatus } from "../cluster/shell.js";
import { leaveRole, processRole, takeRole, withInit, type InitContext, type PostmasterRole } from "../context.js";
import { lostOutcome, withCallerStack, type OnLost, type OutgoingRequest, type Requester } from "../control/channel.js";
import { answerRequest, dispatchRequest } from "../control/dispatch.js";
import type { ControlHandler } from "../control/handler.js";
import { requestFromValue, type RestartTargetOf } from "../control/protocol.js";
import { assertSocketFree, ControlServer } from "../control/server.js";
import { openDatabase } from "../database/index.js";
import type { ServedDatabase } from "../database/types.js";
import type { WorkerDefinition } from "../definition.js";
import { BackgroundWorkerStatus, makeError } from "../errors.js";
import { formatHandle, type HandleRef, type HandleState } from "../handle-format.js";
import { Launcher } from "../launcher.js";
import type { ConnectionParams } from "../database/types.js";
import type { LogEvent } from "../log-events.js";
import { Logger } from "../log.js";
import { pssBytesOf, withUsage } from "../ops/proc-usage.js";
import { ensureTypeScript, importFrom, missingModule, modulePath } from "../modules.js";
import type { FromRunner } from "../runtime/ipc.js";
import { cleanupStaleSegments, ShmemHost, type ShmemAttachment, type ShmemRequest } from "../shmem/index.js";
import type { Phase, ShutdownMode, StatusReport } from "../status.js";
import { PostmasterMachine, type Action, type MachineEvent, type MachineEventKind, type ResultOf, type TimerKey } from "./machine.js";
import type { ResolvedOptions } from "./options.js";
import { Runner, RunnerPool } from "./runner-pool.js";

interface Waiter {
  readonly ref: HandleRef;
  readonly until: "startup" | "shutdown";
  readonly resolve: (state: HandleState) => void;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The shell's map key for a timer the machine named; only the shell's own map sees it. */
function timerId(key: TimerKey): string {
  return key.kind === "restart" ? `restart/${key.slot}/${key.generation}` : key.kind;
}

export class PostmasterShell implements ControlHandler {
  /** Identifies this run of the postmaster in handles. */
  readonly postmasterId: string;
  readonly #options: ResolvedOptions;
  readonly #logger: Logger;
  readonly #machine: PostmasterMachine;
  readonly #runners: RunnerPool;
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #waiters = new Set<Waiter>();
  readonly #events: MachineEvent[] = [];
  #draining = false;
  readonly #shmemRequests: ShmemRequest[] = [];
  readonly #startupHooks: (() => void)[] = [];
  #shmem: ShmemHost | undefined;
  #shmemAttachment: ShmemAttachment | null = null;
  #database: ServedDatabase | undefined;
  /** Why the served database cannot be reached, while the phase is `starting`. */
  #phaseReason: string | null = null;
  #control: ControlServer | undefined;
  #role: PostmasterRole | undefined;
  #startedAt = 0;
  readonly #changeListeners = new Set<() => void>();
  #fatal: Error | undefined;
  readonly stopped: Promise<void>;
  #markStopped!: () => void;
  readonly #removeShmemAtExit = (): void => this.#shmem?.destroy();
  /** Cluster mode (SPEC §10): the node's cluster session and its leases; opened once the database is served. */
  #cluster: ClusterShell | undefined;
  /** The cluster's leases being given up, from the first shutdown request on; `#finish` waits for it. */
  #clusterStopped: Promise<void> | undefined;
  /** The shutdown mode last passed to the cluster's leases. */
  #clusterMode: ShutdownMode | null = null;

  constructor(options: ResolvedOptions, postmasterId: string) {
    this.#options = options;
    this.postmasterId = postmasterId;
    this.#logger = new Logger({ format: options.logFormat, ...(options.logSink === undefined ? {} : { sink: options.logSink }) });
    this.#machine = new PostmasterMachine({
      postmasterId: this.postmasterId,
      maxWorkerProcesses: options.maxWorkerProcesses,
      restartBackoff: options.restartBackoff,
      databaseServed: options.database !== false,
      shutdownTimeoutMs: options.shutdownTimeoutMs,
      cluster: options.cluster !== null,
    });
    this.#runners = new RunnerPool({
      spares: options.spareRunners,
      maxSpares: options.maxSpareRunners,
      cwd: options.cwd,
      shmem: () => this.#shmemAttachment,
      database: () => this.#sessionDatabase(),
    }, {
      message: (runner, message) => this.#onRunnerMessage(runner, message),
      output: (runner, stream, line) => this.#logger.output(this.#workerRef(runner), stream, line),
      exit: (runner, code, signal) => this.#feed({ kind: "exited", pid: runner.pid, code, signal, at: Date.now() }),
    });
    this.stopped = new Promise((resolve) => (this.#markStopped = resolve));
  }

  get failure(): Error | undefined {
    return this.#fatal;
  }

  async start(): Promise<void> {
    const kind = processRole()?.kind;
    // A postmaster that has started says so (below); a new one refuses to start beside another in this process.
    if (this.#machine.lifecycle === "new" && (kind === "postmaster" || kind === "worker")) {
      throw makeError(Error, "ERR_BGWORKER_POSTMASTER_STATE", `Postmaster.start: this process is already a ${kind}; one postmaster per process`);
    }
    await this.#checkBeforeStart();
    this.#ask({ kind: "begin" });
    this.#startedAt = Date.now();
    this.#role = { kind: "postmaster", launcher: new Launcher(new InProcessRequester(this)) };
    takeRole(this.#role);
    try {
      await this.#loadExtensions();
      this.#createShmem();
      // Without a database there is nothing to wait for: every start time has come.
      if (this.#options.database === false) this.#feed({ kind: "phase", phase: "running" });
      this.#runners.warm();
      this.#feed({ kind: "start" });
      if (this.#options.socketPath !== false) {
        this.#control = new ControlServer({ path: this.#options.socketPath, handler: this, logger: this.#logger });
        await this.#control.listen();
      }
      if (this.#options.database !== false) {
        this.#database = openDatabase(this.#options.database, {
          cwd: this.#options.cwd,
          logger: this.#logger,
          restartBackoff: this.#options.restartBackoff,
        });
        await this.#database.start();
        this.#log({ event: "database-served", description: this.#database.description });
        this.#database.watch((phase, reason) => this.#onPhase(phase, reason));
        await this.#joinCluster();
      }
    } catch (error) {
      // Said as what it is: the user asked for no shutdown; whatever started is stopped at once.
      const reason = error instanceof Error ? error.message : String(error);
      this.#feed({ kind: "shutdown", mode: "immediate", startupFailure: reason });
      await this.stopped;
      throw error;
    }
    this.#feed({ kind: "ready" });
    this.#log({ event: "postmaster-ready", extensions: this.#options.extensions.length, staticWorkers: this.#machine.rows().length });
  }

  /**
   * What makes a start pointless, checked before anything runs: a missing extension file, and another
   * postmaster on the socket (a second start must not run `_PG_init` nor start workers before finding out).
   */
  async #checkBeforeStart(): Promise<void> {
    for (const extension of this.#options.extensions) {
      const missing = missingModule(extension, this.#options.cwd);
      if (missing !== null) throw makeError(Error, "ERR_BGWORKER_EXTENSION", `extension module not found: ${missing}`);
    }
    if (this.#options.socketPath !== false) await assertSocketFree(this.#options.socketPath);
  }

  /**
   * Cluster mode: the cluster session and a lease for each cluster-scoped static worker. A live node with
   * the same id, or a schema that cannot be made, stops the start; a server not reachable yet does not.
   */
  async #joinCluster(): Promise<void> {
    const config = this.#options.cluster;
    if (config === null || this.#machine.shuttingDown !== null) return;
    const workers = this.#machine.rows().filter((row) => row.kind === "static" && row.scope === "cluster").map((row) => row.name);
    this.#cluster = new ClusterShell(config, workers, () => this.#servedDatabase(), {
      grant: (worker, generation) => void this.#feed({ kind: "lease-granted", worker, generation }),
      stopWorker: (worker, signal) => void this.#feed({ kind: "lease-stop", worker, signal }),
      log: (event) => this.#log(event),
      fail: (error) => {
        this.#fatal ??= error;
        this.#log({ event: "postmaster-failed", error: error.message });
        this.#feed({ kind: "shutdown", mode: "fast" });
      },
    });
    // A shutdown asked for while the session was opening is passed on once the shell exists.
    await this.#cluster.start();
    this.#passShutdownToCluster();
  }

  /** From the first shutdown request on (and at each upgrade), the leases are given up. */
  #passShutdownToCluster(): void {
    const mode = this.#machine.shuttingDown;
    if (mode === null || this.#cluster === undefined) return;
    const stopped = this.#cluster.shutdown(mode);
    this.#clusterStopped ??= stopped;
  }

  /** `bgworker status --cluster`: read on the cluster session, by the server's clock. */
  clusterStatus(): Promise<ClusterStatus> {
    if (this.#cluster === undefined) {
      return Promise.reject(makeError(Error, "ERR_BGWORKER_POSTMASTER_STATE", "status --cluster: this postmaster is not in a cluster (start it with --cluster NAME)"));
    }
    return this.#cluster.status();
  }

  /** Shuts down in `mode`; before `start` it only marks the postmaster stopped. */
  stop(mode: ShutdownMode): void {
    if (this.#machine.lifecycle === "new") {
      this.#feed({ kind: "closed" });
      this.#markStopped();
    } else if (this.#machine.lifecycle !== "stopped") {
      this.#feed({ kind: "shutdown", mode });
    }
  }

  /**
   * SIGHUP, `bgworker reload`: the machine logs PostgreSQL's line and sends SIGHUP to every worker; a managed
   * server re-reads its configuration (`pg_ctl reload`). A server that cannot be signalled is a WARNING,
   * never a reason to stop.
   */
  async reload(): Promise<void> {
    const lifecycle = this.#machine.lifecycle;
    if (lifecycle === "new" || lifecycle === "stopped") {
      throw makeError(Error, "ERR_BGWORKER_POSTMASTER_STATE", `cannot reload: the postmaster is ${lifecycle}`);
    }
    this.#feed({ kind: "reload" });
    try {
      if (await this.#database?.reload()) this.#log({ event: "server-reloaded" });
    } catch (error) {
      this.#log({ event: "server-reload-failed", error: messageOf(error) });
    }
  }

  get lifecycle(): string {
    return this.#machine.lifecycle;
  }

  status(): StatusReport {
    return {
      postmaster: {
        pid: process.pid,
        phase: this.#machine.currentPhase,
        phaseReason: this.#machine.currentPhase === "starting" ? this.#phaseReason : null,
        database: this.#database?.description ?? (this.#options.database === false ? "none (--no-database)" : "starting"),
        uptimeMs: this.#startedAt === 0 ? 0 : Date.now() - this.#startedAt,
        shmemBytes: this.#shmem?.size ?? 0,
        maxWorkerProcesses: this.#options.maxWorkerProcesses,
        spares: this.#sparesStatus(),
        shutdown: this.#machine.shuttingDown,
        cluster: this.#options.cluster === null ? null : { name: this.#options.cluster.name, nodeId: this.#options.cluster.nodeId },
      },
      workers: this.#machine.rows().map((row) => withUsage(row, row.pid === null ? undefined : this.#machine.handedOverAt(row.pid))),
    };
  }

  #sparesStatus(): StatusReport["postmaster"]["spares"] {
    const { pids, ready, target, max } = this.#runners.pool;
    return { count: pids.length, ready, target, max, pssBytes: pssBytesOf(pids) };
  }

  /** Calls `listener` after every change of state (worker, phase, shutdown); returns the unsubscribe function. */
  onChange(listener: () => void): () => void {
    this.#changeListeners.add(listener);
    return () => this.#changeListeners.delete(listener);
  }

  // ----- ControlHandler: what the control socket, workers and this process's launcher ask -----------

  launch(definition: WorkerDefinition): HandleRef {
    return this.#ask({ kind: "launch", definition });
  }

  state(ref: HandleRef): HandleState {
    return this.#machine.handleState(ref);
  }

  waitForStartup(ref: HandleRef, callerPid: number): Promise<HandleState> {
    return this.#wait(ref, "startup", callerPid);
  }

  waitForShutdown(ref: HandleRef, callerPid: number): Promise<HandleState> {
    return this.#wait(ref, "shutdown", callerPid);
  }

  terminate(target: number | HandleRef): void {
    // A stale handle names a worker that has stopped already: nothing to do. A pid must name a worker.
    const found = this.#ask({ kind: "terminate", target: typeof target === "number" ? { pid: target } : { handle: target } });
    if (!found && typeof target === "number") throw makeError(Error, "ERR_BGWORKER_NO_SUCH_WORKER", `no background worker with pid ${target}`);
  }

  restart(target: RestartTargetOf<HandleRef>): number {
    const matched = this.#ask({ kind: "restart", target });
    if (matched === 0) {
      const what = "pid" in target ? `with pid ${target.pid}` : "type" in target ? `of type "${target.type}"` : `with handle ${formatHandle(target.handle)}`;
      throw makeError(Error, "ERR_BGWORKER_NO_SUCH_WORKER", `no registered background worker ${what}`);
    }
    return matched;
  }

  clientGone(pid: number): void {
    this.#feed({ kind: "client-gone", pid });
  }

  /** How the log names a runner: the worker the machine knows it as, or a spare that has not become one yet. */
  #workerRef(runner: Runner): { name: string; type: string; pid: number } {
    return this.#machine.workerOfPid(runner.pid) ?? { name: "spare runner", type: "bgworker runner", pid: runner.pid };
  }

  // ----- start-up -----------------------------------------------------------------------------------

  async #loadExtensions(): Promise<void> {
    await ensureTypeScript();
    for (const extension of this.#options.extensions) {
      const path = modulePath(extension, this.#options.cwd) ?? extension;
      let module: Record<string, unknown>;
      try {
        module = await importFrom(extension, this.#options.cwd);
      } catch (error) {
        throw makeError(Error, "ERR_BGWORKER_EXTENSION", `extension "${extension}": cannot load ${path}: ${error instanceof Error ? error.message : String(error)}`);
      }
      const init = module._PG_init;
      if (typeof init !== "function") throw makeError(Error, "ERR_BGWORKER_EXTENSION", `extension "${extension}" exports no _PG_init() function`);
      const context: InitContext = {
        extension: path,
        registerStatic: (definition, startup) => {
          // `_PG_init` runs outside the queue's work (awaited above, never from an action), so the event is
          // handled at once and a refusal is thrown to the extension.
          this.#ask({ kind: "register-static", definition });
          this.#runners.know(definition);
          this.#log({ event: "worker-registered", name: definition.name, extension });
          if (startup !== undefined) this.#startupHooks.push(startup);
        },
        requestShmem: (requests) => {
          this.#shmemRequests.push(...requests);
        },
      };
      await withInit(context, () => (init as () => unknown)());
    }
  }

  #createShmem(): void {
    if (this.#shmemRequests.length === 0 && this.#startupHooks.length === 0) return;
    const removed = cleanupStaleSegments();
    for (const segment of removed) this.#log({ event: "stale-segment-removed", segment });
    this.#shmem = new ShmemHost(this.#shmemRequests);
    process.once("exit", this.#removeShmemAtExit);
    this.#resetShmem();
  }

  /** Creates a fresh segment and runs the startup hooks: at start, and after a crash of a shared-memory worker. */
  #resetShmem(): void {
    if (this.#shmem === undefined) return;
    this.#shmemAttachment = this.#shmem.create();
    this.#runners.preparationChanged();
    for (const hook of this.#startupHooks) {
      try {
        hook();
      } catch (error) {
        throw makeError(Error, "ERR_BGWORKER_SHMEM_STARTUP", `a shared memory startup hook failed: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
  }

  // ----- the served database -------------------------------------------------------------------------
  // The shell is the one owner of the database's settings: they are read from the served database when
  // needed, never copied. Spawns and spares both read them here.

  /**
   * The served database's connection settings for a worker, whatever its phase (an SPI worker started just
   * as the database goes away gets the database's own error, not "no database is served"); null without one.
   */
  #servedDatabase(): ConnectionParams | null {
    return this.#database?.connectionParams() ?? null;
  }

  /** The settings spares may open a session with ahead of time: the served database while it accepts sessions. */
  #sessionDatabase(): ConnectionParams | null {
    return this.#machine.currentPhase === "starting" ? null : this.#servedDatabase();
  }

  // ----- events from the world ----------------------------------------------------------------------

  #onPhase(phase: Phase, reason: string): void {
    if (phase !== this.#machine.currentPhase) this.#log({ event: "phase-changed", phase, reason });
    // Why it cannot be reached: said once, and again each time the reason changes (SPEC §6).
    else if (phase === "starting" && reason !== this.#phaseReason) this.#log({ event: "database-unreachable", reason });
    this.#phaseReason = phase === "starting" ? reason : null;
    this.#feed({ kind: "phase", phase });
    this.#runners.preparationChanged();
  }

  #onRunnerMessage(runner: Runner, message: FromRunner): void {
    switch (message.t) {
      case "entered":
        this.#feed({ kind: "entered", pid: runner.pid, at: Date.now() });
        return;
      case "log":
        this.#logger.fromWorker(this.#workerRef(runner), message.level, message.message, message.detail);
        return;
      case "request":
        void this.#answer(runner, message.request);
        return;
      case "session":
        this.#feed({ kind: "session", pid: runner.pid, backendPid: message.backendPid });
        return;
      case "ready":
      case "exiting":
        return;
    }
  }

  /** A worker's control request (dynamic workers and their handles), answered as for a socket client. */
  async #answer(runner: Runner, wire: unknown): Promise<void> {
    const answer = await answerRequest(this, wire, runner.pid);
    if ("ok" in answer && typeof answer.id === "number") {
      runner.send(answer.ok ? { t: "reply", id: answer.id, ok: true, result: answer.result } : { t: "reply", id: answer.id, ok: false, error: answer.error });
      return;
    }
    // Only this package's own runtime sends these; a malformed one is a bug worth a line, not a crash.
    const why = "ok" in answer ? (answer.ok ? "its id is not a number" : answer.error.message) : answer.error.message;
    this.#log({ event: "malformed-request", pid: runner.pid, reason: why });
  }

  // ----- carrying out the machine's decisions ---------------------------------------------------------

  /**
   * Queues `event` and, unless the queue is already being worked, works it: each event's actions are carried
   * out before the next event is given to the machine. Waiters are told once the queue is empty. Returns
   * the event's outcome when it was handled now, undefined when it was queued behind the work in progress
   * (an event fed by an action).
   */
  #feed<E extends MachineEvent>(event: E): { readonly result: ResultOf<E["kind"]> } | undefined {
    this.#events.push(event);
    if (this.#draining) return undefined;
    this.#draining = true;
    let outcome: { readonly result: ResultOf<E["kind"]> } | undefined;
    try {
      for (let next = this.#events.shift(); next !== undefined; next = this.#events.shift()) {
        const { actions, result } = this.#machine.handle(next);
        if (next === event) outcome = { result: result as ResultOf<E["kind"]> };
        for (const action of actions) this.#perform(action);
      }
    } finally {
      this.#draining = false;
      // An event that threw (e.g. a refused launch) leaves the rest for the next feed; none is lost.
    }
    this.#settleWaiters();
    for (const listener of this.#changeListeners) listener();
    // Workers still queued for a runner are told at once that they will not start; leases are given up.
    if (this.#machine.shuttingDown !== null) {
      this.#runners.reconsider();
      if (this.#cluster !== undefined && this.#clusterMode !== this.#machine.shuttingDown) {
        this.#clusterMode = this.#machine.shuttingDown;
        this.#passShutdownToCluster();
      }
    }
    return outcome;
  }

  /**
   * An event whose result the caller needs (a request, a registration): handled at once through the queue.
   * Requests come from the event loop (`InProcessRequester` answers on a later turn), never from inside
   * the actions being carried out, where the event would wait behind them and its result would be lost.
   */
  #ask<K extends MachineEventKind>(event: Extract<MachineEvent, { readonly kind: K }>): ResultOf<K> {
    // Refused before it is queued: queued, it would still be carried out, with nobody to take its result.
    if (this.#draining) throw new Error(`internal error: a ${event.kind} event while the postmaster's actions are being carried out`);
    const outcome = this.#feed(event);
    if (outcome === undefined) throw new Error(`internal error: the ${event.kind} event was not handled`);
    return outcome.result;
  }

  #log(event: LogEvent): void {
    this.#logger.event(event);
  }

  #perform(action: Action): void {
    switch (action.type) {
      case "spawn":
        return this.#spawn(action);
      case "signal":
        try {
          process.kill(action.pid, action.signal);
        } catch {
          // Gone already; its exit event is on its way.
        }
        return;
      case "setTimer": {
        const id = timerId(action.key);
        clearTimeout(this.#timers.get(id));
        const timer = setTimeout(() => {
          this.#timers.delete(id);
          this.#feed({ kind: "timer", key: action.key });
        }, action.delayMs);
        this.#timers.set(id, timer);
        return;
      }
      case "clearTimer": {
        const id = timerId(action.key);
        clearTimeout(this.#timers.get(id));
        this.#timers.delete(id);
        return;
      }
      case "log":
        this.#logger.event(action.event, action.worker === undefined ? {} : { worker: action.worker });
        return;
      case "resetShmem":
        try {
          this.#resetShmem();
        } catch (error) {
          // As PostgreSQL when it cannot reinitialise after a crash: give up, stopping everything.
          this.#fatal = error instanceof Error ? error : new Error(String(error));
          this.#log({ event: "postmaster-failed", error: this.#fatal.message });
          this.#feed({ kind: "shutdown", mode: "immediate" });
          return;
        }
        this.#feed({ kind: "shmem-reset" });
        return;
      case "shutdownComplete":
        void this.#finish();
        return;
      case "lease":
        this.#cluster?.workerEvent(action.worker, action.event);
        return;
    }
  }

  #spawn({ slot, generation, definition, restart, staticStart, fencingToken }: Extract<Action, { type: "spawn" }>): void {
    const cluster = fencingToken === null || this.#options.cluster === null ? null : { name: this.#options.cluster.name, fencingToken: fencingToken.toString() };
    this.#runners.request({
      definition,
      restart,
      staticStart,
      deliver: (runner) => {
        runner.send({
          t: "start",
          definition,
          slot,
          generation,
          postmasterId: this.postmasterId,
          postmasterPid: process.pid,
          cwd: this.#options.cwd,
          database: definition.spi ? this.#servedDatabase() : null,
          shmem: definition.shmem ? this.#shmemAttachment : null,
          cluster,
        });
        this.#feed({ kind: "handed-over", slot, generation, pid: runner.pid, at: Date.now() });
      },
      // PostgreSQL counts a failed fork as exit code 1; the machine applies that rule.
      fail: (reason) => this.#feed({ kind: "spawn-failed", slot, generation, reason, at: Date.now() }),
      // A worker still queued for a runner when the postmaster shuts down never starts.
      withdrawn: () =>
        !this.#machine.awaitsProcess(slot, generation)
          ? "the worker no longer waits for a process"
          : this.#machine.shuttingDown !== null
            ? "the postmaster is shutting down"
            : undefined,
    });
  }

  #wait(ref: HandleRef, until: Waiter["until"], callerPid: number): Promise<HandleState> {
    // Only the notify pid may wait, even on a worker that has already stopped (pgrx's Untracked); a handle
    // whose slot has been reused names no worker anyone can wait for: Stopped.
    const notifyPid = this.#machine.notifyPidOf(ref);
    if (notifyPid === undefined) return Promise.resolve(this.#machine.handleState(ref));
    if (notifyPid === 0 || notifyPid !== callerPid) return Promise.resolve({ status: BackgroundWorkerStatus.Untracked });
    if (this.#machine.lifecycle === "stopped") return Promise.resolve({ status: BackgroundWorkerStatus.PostmasterDied });
    return new Promise((resolve) => {
      this.#waiters.add({ ref, until, resolve });
      this.#settleWaiters();
    });
  }

  #settleWaiters(): void {
    for (const waiter of this.#waiters) {
      const state = this.#machine.handleState(waiter.ref);
      const done =
        state.status === BackgroundWorkerStatus.Stopped || (waiter.until === "startup" && state.status === BackgroundWorkerStatus.Started);
      if (done) {
        this.#waiters.delete(waiter);
        waiter.resolve(state);
      }
    }
  }

  /**
   * Every worker is gone: stop the database, remove shared memory, then close the control socket, so that
   * a client (`bgworker stop`) sees its connection end only once the shutdown is complete.
   */
  async #finish(): Promise<void> {
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    this.#runners.close();
    // Every worker is gone: the leases are released (a NOTIFY each, for a fast handover) before the session closes.
    await this.#clusterStopped;
    try {
      await this.#database?.stop();
    } catch (error) {
      this.#log({ event: "shutdown-problem", error: messageOf(error) });
    }
    this.#shmem?.destroy();
    process.removeListener("exit", this.#removeShmemAtExit);
    // This runs once the queue that reported the last exit is worked, so waiters have been told Stopped;
    // whoever still waits is told that the postmaster is gone.
    this.#settleWaiters();
    for (const waiter of this.#waiters) waiter.resolve({ status: BackgroundWorkerStatus.PostmasterDied });
    this.#waiters.clear();
    // Let the replies to those waits go out before the connections are dropped.
    await new Promise((resolve) => setImmediate(resolve));
    try {
      await this.#control?.close();
    } catch (error) {
      this.#log({ event: "shutdown-problem", error: messageOf(error) });
    }
    if (this.#role !== undefined) leaveRole(this.#role);
    this.#feed({ kind: "closed" });
    this.#log({ event: "postmaster-shut-down" });
    this.#markStopped();
  }
}

/**
 * The postmaster's own process puts its requests straight to the shell, validated and dispatched as any
 * other transport's (the same admission check, with this process as the caller). The answer always comes
 * on a later turn of the event loop, so a request is never answered inside the shell's own work.
 */
class InProcessRequester implements Requester {
  readonly #shell: PostmasterShell;

  constructor(shell: PostmasterShell) {
    this.#shell = shell;
  }

  async request(request: OutgoingRequest, onLost: OnLost): Promise<unknown> {
    const caller = new Error("request");
    Error.captureStackTrace(caller, this.request);
    await Promise.resolve();
    if (this.#shell.lifecycle === "stopped") {
      return lostOutcome({ postmasterGone: true, message: "the postmaster has shut down" }, onLost, caller);
    }
    const parsed = requestFromValue({ ...request, id: 0 });
    try {
      if (!parsed.ok) throw parsed.error;
      return await dispatchRequest(this.#shell, parsed.value, process.pid);
    } catch (error) {
      throw withCallerStack(error instanceof Error ? error : new Error(String(error)), caller);
    }
  }
}
