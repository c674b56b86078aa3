/**
 * The postmaster's state machine: the slot table and every decision about it (start, restart, crash,
 * terminate, shutdown), with no I/O. The shell feeds it events (a method call each, with the current time
 * where a rule depends on it) and carries out the actions it returns. It is the only writer of worker state, as PostgreSQL's postmaster
 * is the only writer of its `BackgroundWorkerList`.
 */
import { START_TIME_NAMES, type WorkerDefinition } from "../definition.js";
import { BackgroundWorkerStatus, NoFreeWorkerSlotError } from "../errors.js";
import type { HandleRef, HandleState } from "../launcher.js";
import { formatHandle } from "../launcher.js";
import type { LogLevel } from "../log.js";
import type { LastExit, Phase, ShutdownMode, WorkerState, WorkerStatusRow } from "../status.js";
import {
  classifyExit,
  dampingDelay,
  DEFAULT_RESTART_BACKOFF,
  describeExit,
  mayStart,
  nextFastFailures,
  type RestartBackoff,
} from "./rules.js";

export type Action =
  | { readonly type: "spawn"; readonly slot: number; readonly generation: number; readonly definition: WorkerDefinition }
  | { readonly type: "signal"; readonly pid: number; readonly signal: "SIGTERM" | "SIGKILL" }
  | { readonly type: "setTimer"; readonly key: string; readonly delayMs: number }
  | { readonly type: "clearTimer"; readonly key: string }
  | { readonly type: "log"; readonly level: LogLevel; readonly message: string; readonly worker?: { name: string; type: string; pid?: number } }
  /** Every shared-memory worker is gone after a crash: re-create the segment, re-run startup hooks, then call `shmemReset`. */
  | { readonly type: "resetShmem" }
  /** Shutdown finished: every worker process is gone. */
  | { readonly type: "shutdownComplete"; readonly mode: ShutdownMode };

export interface MachineOptions {
  readonly postmasterId: string;
  readonly maxWorkerProcesses: number;
  readonly restartBackoff?: RestartBackoff;
  /** Without a database, workers that request SPI are refused. */
  readonly databaseServed: boolean;
  /** Fast shutdown: SIGKILL what remains this long after SIGTERM. */
  readonly shutdownTimeoutMs: number;
}

interface Slot {
  readonly index: number;
  generation: number;
  definition: WorkerDefinition;
  kind: "static" | "dynamic";
  /** Registered: false once unregistered (done, terminated, forgotten); the row then shows the last run. */
  registered: boolean;
  state: WorkerState;
  /** Set from `spawn` until the process has exited. */
  pid: number | null;
  /** A spawn was asked for and its pid is not known yet. */
  spawning: boolean;
  /**
   * When the current run began, for the restart-storm rule: when its function was entered, or when the
   * process was forked if it never got that far. Import time is not held against the worker.
   */
  runStartedAt: number;
  restarts: number;
  fastFailures: number;
  lastExit: LastExit | null;
  backoffMs: number | null;
  /** Terminated through a handle (or by pid): never restarted. */
  terminated: boolean;
  /** Killed by the postmaster as part of a crash-restart: its exit is expected, not another crash. */
  killedForCrash: boolean;
  notifyPid: number;
}

const SHUTDOWN_ORDER: Readonly<Record<ShutdownMode, number>> = { smart: 1, fast: 2, immediate: 3 };
const SHUTDOWN_KILL_TIMER = "shutdown-kill";

function restartTimer(slot: Slot): string {
  return `restart:${slot.index}:${slot.generation}`;
}

function workerOf(slot: Slot): { name: string; type: string; pid?: number } {
  return slot.pid === null
    ? { name: slot.definition.name, type: slot.definition.type }
    : { name: slot.definition.name, type: slot.definition.type, pid: slot.pid };
}

export class PostmasterMachine {
  readonly postmasterId: string;
  readonly maxWorkerProcesses: number;
  private readonly backoff: RestartBackoff;
  private readonly databaseServed: boolean;
  private readonly shutdownTimeoutMs: number;
  private readonly slots: Slot[] = [];
  private phase: Phase = "starting";
  private started = false;
  private shutdownMode: ShutdownMode | null = null;
  private shutdownDone = false;
  /** Set between a shared-memory crash and the re-creation of the segment. */
  private crashRecovery = false;
  private actions: Action[] = [];

  constructor(options: MachineOptions) {
    this.postmasterId = options.postmasterId;
    this.maxWorkerProcesses = options.maxWorkerProcesses;
    this.backoff = options.restartBackoff ?? DEFAULT_RESTART_BACKOFF;
    this.databaseServed = options.databaseServed;
    this.shutdownTimeoutMs = options.shutdownTimeoutMs;
  }

  // ----- registration -------------------------------------------------------------------------------

  /** A static worker from `_PG_init`. Only before `start`. */
  registerStatic(definition: WorkerDefinition): void {
    if (this.started) throw new Error(`background worker "${definition.name}": static workers can only be registered before the postmaster starts`);
    this.checkDatabaseAccess(definition);
    if (this.slots.length >= this.maxWorkerProcesses) {
      throw new RangeError(
        `load: background worker "${definition.name}" does not fit: all ${this.maxWorkerProcesses} worker slots ` +
          `(maxWorkerProcesses) are taken by static workers`,
      );
    }
    this.slots.push(this.newSlot(this.slots.length, definition, "static", 0));
  }

  /** The postmaster is up: start what the current phase allows. */
  start(): Action[] {
    this.started = true;
    for (const slot of this.slots) {
      this.emit({ type: "log", level: "DEBUG", message: `registering background worker "${slot.definition.name}"` });
      this.startIfAllowed(slot);
    }
    return this.flush();
  }

  /** A dynamic worker. Throws `NoFreeWorkerSlotError` when every slot is taken, or an Error while shutting down. */
  launch(definition: WorkerDefinition): { ref: HandleRef; actions: Action[] } {
    if (this.shutdownMode !== null) {
      throw new Error(`cannot register background worker "${definition.name}": the postmaster is shutting down`);
    }
    this.checkDatabaseAccess(definition);
    let slot = this.slots.find((s) => !s.registered && s.pid === null && !s.spawning);
    if (slot === undefined) {
      if (this.slots.length >= this.maxWorkerProcesses) {
        throw new NoFreeWorkerSlotError(
          `cannot register background worker "${definition.name}": all ${this.maxWorkerProcesses} worker slots ` +
            `(maxWorkerProcesses) are in use`,
        );
      }
      slot = this.newSlot(this.slots.length, definition, "dynamic", 0);
      this.slots.push(slot);
    } else {
      // Reusing a slot moves its generation on, so handles to its previous worker report Stopped.
      Object.assign(slot, this.newSlot(slot.index, definition, "dynamic", slot.generation));
    }
    if (this.started) this.startIfAllowed(slot);
    return { ref: this.refOf(slot), actions: this.flush() };
  }

  private newSlot(index: number, definition: WorkerDefinition, kind: "static" | "dynamic", previousGeneration: number): Slot {
    return {
      index,
      generation: previousGeneration + 1,
      definition,
      kind,
      registered: true,
      state: "waiting",
      pid: null,
      spawning: false,
      runStartedAt: 0,
      restarts: 0,
      fastFailures: 0,
      lastExit: null,
      backoffMs: null,
      terminated: false,
      killedForCrash: false,
      notifyPid: definition.notifyPid,
    };
  }

  private checkDatabaseAccess(definition: WorkerDefinition): void {
    if (definition.spi && !this.databaseServed) {
      throw new Error(
        `background worker "${definition.name}" requests database access (enableSpiAccess), but this postmaster serves no database (--no-database)`,
      );
    }
  }

  // ----- process life -------------------------------------------------------------------------------

  /** The process for a `spawn` action exists. */
  forked(slotIndex: number, generation: number, pid: number, now: number): Action[] {
    const slot = this.slotOf(slotIndex, generation);
    if (slot === undefined || !slot.spawning) return this.flush();
    slot.spawning = false;
    slot.pid = pid;
    slot.runStartedAt = now;
    this.emit({ type: "log", level: "DEBUG", message: `started background worker "${slot.definition.name}" (PID ${pid})`, worker: workerOf(slot) });
    // Decisions taken while the process did not exist yet apply to it now.
    if (this.shutdownMode === "immediate") this.emit({ type: "signal", pid, signal: "SIGKILL" });
    else if (this.shutdownMode === "fast" || slot.terminated) this.emit({ type: "signal", pid, signal: "SIGTERM" });
    else if (this.crashRecovery && slot.definition.shmem) {
      slot.killedForCrash = true;
      this.emit({ type: "signal", pid, signal: "SIGKILL" });
    }
    return this.flush();
  }

  /** The worker's function has been entered: the worker counts as Started. */
  entered(slotIndex: number, generation: number, now: number): Action[] {
    const slot = this.slotOf(slotIndex, generation);
    if (slot !== undefined && slot.pid !== null && slot.state === "starting") {
      slot.state = "running";
      slot.runStartedAt = now;
    }
    return this.flush();
  }

  /** A spawn failed before a process existed; PostgreSQL counts a failed fork as exit code 1. */
  spawnFailed(slotIndex: number, generation: number, error: string, now: number): Action[] {
    const slot = this.slotOf(slotIndex, generation);
    if (slot === undefined || !slot.spawning) return this.flush();
    slot.spawning = false;
    slot.runStartedAt = now;
    this.emit({ type: "log", level: "LOG", message: `could not fork background worker process "${slot.definition.name}": ${error}`, worker: workerOf(slot) });
    this.afterExit(slot, { code: 1, signal: null, at: new Date(now).toISOString() }, now);
    this.afterAnyExit();
    return this.flush();
  }

  exited(pid: number, code: number | null, signal: string | null, now: number): Action[] {
    const slot = this.slots.find((s) => s.pid === pid);
    if (slot === undefined) return this.flush();
    const lastExit: LastExit = { code, signal, at: new Date(now).toISOString() };
    const kind = classifyExit(code, signal);
    const worker = workerOf(slot);
    this.emit({ type: "log", level: "LOG", message: `background worker "${slot.definition.type}" (PID ${pid}) ${describeExit(code, signal)}`, worker });
    slot.pid = null;
    this.releaseNotifications(pid);
    if (slot.killedForCrash) {
      slot.killedForCrash = false;
      slot.lastExit = lastExit;
      // Killed as part of a crash-restart: restartable workers come back when the segment is re-created.
      if (slot.definition.restartTimeMs === null || slot.terminated || this.shutdownMode !== null) this.unregister(slot);
      else this.setState(slot, "waiting");
    } else if (kind === "crashed" && slot.definition.shmem && this.shutdownMode === null) {
      this.crash(slot, lastExit, now);
    } else {
      this.afterExit(slot, lastExit, now);
    }
    this.afterAnyExit();
    return this.flush();
  }

  /** Exit 0, exit 1, or a crash that does not involve shared memory (handled like exit 1). */
  private afterExit(slot: Slot, lastExit: LastExit, now: number): void {
    slot.lastExit = lastExit;
    const kind = classifyExit(lastExit.code, lastExit.signal);
    if (kind === "done" || slot.terminated || slot.definition.restartTimeMs === null || this.shutdownMode !== null) {
      this.unregister(slot);
      return;
    }
    this.scheduleRestart(slot, now, slot.definition.restartTimeMs);
  }

  private scheduleRestart(slot: Slot, now: number, restartTimeMs: number): void {
    const previous = slot.fastFailures;
    slot.fastFailures = nextFastFailures(previous, now - slot.runStartedAt, this.backoff);
    const extra = dampingDelay(slot.fastFailures, this.backoff);
    const delay = Math.max(restartTimeMs, extra);
    if (extra > 0 && extra > restartTimeMs) {
      this.emit({
        type: "log",
        level: "LOG",
        message:
          `background worker "${slot.definition.type}" failed ${slot.fastFailures} times in a row within ` +
          `${this.backoff.fastFailureMs} ms of starting; delaying its restart by ${delay} ms`,
        worker: workerOf(slot),
      });
    }
    slot.backoffMs = delay;
    this.setState(slot, "backoff");
    this.emit({ type: "setTimer", key: restartTimer(slot), delayMs: delay });
  }

  /** PostgreSQL's crash rule, narrowed to the workers that share memory with the one that crashed. */
  private crash(slot: Slot, lastExit: LastExit, now: number): void {
    slot.lastExit = lastExit;
    this.emit({ type: "log", level: "LOG", message: "terminating any other active server processes that use shared memory" });
    this.crashRecovery = true;
    for (const other of this.slots) {
      if (other === slot || !other.definition.shmem) continue;
      if (other.pid !== null) {
        other.killedForCrash = true;
        this.emit({ type: "signal", pid: other.pid, signal: "SIGKILL" });
      } else if (other.state === "backoff") {
        // A pending restart of a shared-memory worker waits for the re-created segment like the rest.
        this.emit({ type: "clearTimer", key: restartTimer(other) });
        this.setState(other, "waiting");
      }
    }
    if (slot.definition.restartTimeMs === null || slot.terminated) {
      this.unregister(slot);
    } else {
      slot.fastFailures = nextFastFailures(slot.fastFailures, now - slot.runStartedAt, this.backoff);
      this.setState(slot, "waiting");
    }
  }

  /** The segment has been re-created and the startup hooks re-run: bring the shared-memory workers back. */
  shmemReset(): Action[] {
    if (!this.crashRecovery) return this.flush();
    this.crashRecovery = false;
    for (const slot of this.slots) {
      if (!slot.registered || !slot.definition.shmem || slot.state !== "waiting") continue;
      const extra = dampingDelay(slot.fastFailures, this.backoff);
      if (extra > 0) {
        slot.backoffMs = extra;
        this.setState(slot, "backoff");
        this.emit({ type: "setTimer", key: restartTimer(slot), delayMs: extra });
      } else {
        this.startIfAllowed(slot);
      }
    }
    return this.flush();
  }

  private afterAnyExit(): void {
    if (this.crashRecovery && !this.slots.some((s) => s.definition.shmem && (s.pid !== null || s.spawning))) {
      this.emit({ type: "log", level: "LOG", message: "all shared-memory workers terminated; reinitializing shared memory" });
      this.emit({ type: "resetShmem" });
    }
    this.advanceShutdown();
  }

  /** A restart timer fired (or any other timer the machine set). */
  timer(key: string): Action[] {
    if (key === SHUTDOWN_KILL_TIMER) {
      for (const slot of this.slots) {
        if (slot.pid !== null) this.emit({ type: "signal", pid: slot.pid, signal: "SIGKILL" });
      }
      return this.flush();
    }
    const slot = this.slots.find((s) => restartTimer(s) === key);
    if (slot !== undefined && slot.registered && slot.state === "backoff") {
      slot.backoffMs = null;
      this.setState(slot, "waiting");
      this.startIfAllowed(slot);
    }
    return this.flush();
  }

  // ----- database -----------------------------------------------------------------------------------

  setPhase(phase: Phase): Action[] {
    if (phase === this.phase) return this.flush();
    const rising = rank(phase) > rank(this.phase);
    this.phase = phase;
    if (rising) {
      for (const slot of this.slots) if (slot.state === "waiting") this.startIfAllowed(slot);
    } else {
      // Database lost: its sessions are gone, so SPI workers stop and come back by their restart rules.
      for (const slot of this.slots) {
        if (slot.definition.spi && slot.pid !== null && !mayStart(slot.definition.startTime, phase)) {
          this.emit({ type: "signal", pid: slot.pid, signal: "SIGTERM" });
        }
      }
    }
    return this.flush();
  }

  // ----- requests -----------------------------------------------------------------------------------

  /** Terminate through a handle: SIGTERM if running, unregister if not started; never restarted. */
  terminate(ref: HandleRef): Action[] {
    const slot = this.liveSlot(ref);
    if (slot !== undefined) this.terminateSlot(slot);
    return this.flush();
  }

  /** Terminate the worker with this pid; false when no worker has it. */
  terminatePid(pid: number): { found: boolean; actions: Action[] } {
    const slot = this.slots.find((s) => s.pid === pid);
    if (slot !== undefined) this.terminateSlot(slot);
    return { found: slot !== undefined, actions: this.flush() };
  }

  private terminateSlot(slot: Slot): void {
    slot.terminated = true;
    if (slot.pid !== null) this.emit({ type: "signal", pid: slot.pid, signal: "SIGTERM" });
    else if (!slot.spawning) this.unregister(slot);
  }

  /** A process that may be a notify pid is gone: its notifications are cancelled, its workers keep running. */
  releaseNotifications(pid: number): void {
    for (const slot of this.slots) if (slot.notifyPid === pid) slot.notifyPid = 0;
  }

  /** Smart, fast or immediate shutdown; a stronger mode may follow a weaker one, as with pg_ctl. */
  shutdown(mode: ShutdownMode): Action[] {
    if (this.shutdownMode !== null && SHUTDOWN_ORDER[mode] <= SHUTDOWN_ORDER[this.shutdownMode]) return this.flush();
    this.shutdownMode = mode;
    this.emit({ type: "log", level: "LOG", message: `received ${mode} shutdown request` });
    // Nothing new starts from now on: forget what has not started, so its waiters are told.
    for (const slot of this.slots) {
      if (slot.registered && slot.pid === null && !slot.spawning) this.unregister(slot);
    }
    if (mode === "fast") this.stopAll("SIGTERM");
    else if (mode === "immediate") this.stopAll("SIGKILL");
    this.advanceShutdown();
    return this.flush();
  }

  private stopAll(signal: "SIGTERM" | "SIGKILL"): void {
    for (const slot of this.slots) if (slot.pid !== null) this.emit({ type: "signal", pid: slot.pid, signal });
    if (signal === "SIGTERM") this.emit({ type: "setTimer", key: SHUTDOWN_KILL_TIMER, delayMs: this.shutdownTimeoutMs });
  }

  private advanceShutdown(): void {
    if (this.shutdownMode === null || this.shutdownDone) return;
    // Smart: dynamic workers may finish their work; once they have, the rest stop as in a fast shutdown.
    if (this.shutdownMode === "smart" && !this.slots.some((s) => s.kind === "dynamic" && (s.pid !== null || s.spawning))) {
      this.shutdownMode = "fast";
      this.emit({ type: "log", level: "LOG", message: "no dynamic background workers left; stopping the others" });
      this.stopAll("SIGTERM");
    }
    if (this.slots.some((s) => s.pid !== null || s.spawning)) return;
    this.shutdownDone = true;
    this.emit({ type: "clearTimer", key: SHUTDOWN_KILL_TIMER });
    this.emit({ type: "shutdownComplete", mode: this.shutdownMode });
  }

  // ----- queries ------------------------------------------------------------------------------------

  /** PostgreSQL's `GetBackgroundWorkerPid`, with Started meaning the function has been entered. */
  handleState(ref: HandleRef): HandleState {
    const slot = this.liveSlot(ref);
    if (slot === undefined) return { status: BackgroundWorkerStatus.Stopped };
    if (slot.state === "running" && slot.pid !== null) return { status: BackgroundWorkerStatus.Started, pid: slot.pid };
    return { status: BackgroundWorkerStatus.NotYetStarted };
  }

  /**
   * The notify pid of the worker a handle names (0 once its notifications were cancelled), still known after
   * it stopped, until its slot is reused; undefined once nobody can tell.
   */
  notifyPidOf(ref: HandleRef): number | undefined {
    if (ref.postmaster !== this.postmasterId) return undefined;
    const slot = this.slots[ref.slot];
    return slot !== undefined && slot.generation === ref.generation ? slot.notifyPid : undefined;
  }

  get currentPhase(): Phase {
    return this.phase;
  }

  get shuttingDown(): ShutdownMode | null {
    return this.shutdownMode;
  }

  /** The slot a running worker occupies, for the shell's bookkeeping. */
  slotOfPid(pid: number): { slot: number; generation: number; definition: WorkerDefinition } | undefined {
    const slot = this.slots.find((s) => s.pid === pid);
    return slot === undefined ? undefined : { slot: slot.index, generation: slot.generation, definition: slot.definition };
  }

  rows(): WorkerStatusRow[] {
    return this.slots.map((slot) => ({
      slot: slot.index,
      name: slot.definition.name,
      type: slot.definition.type,
      pid: slot.pid,
      state: slot.state,
      startTime: START_TIME_NAMES[slot.definition.startTime] as WorkerStatusRow["startTime"],
      restartTimeMs: slot.definition.restartTimeMs,
      restarts: slot.restarts,
      lastExit: slot.lastExit,
      notifyPid: slot.notifyPid,
      kind: slot.kind,
      spi: slot.definition.spi,
      shmem: slot.definition.shmem,
      backoffMs: slot.state === "backoff" ? slot.backoffMs : null,
      handle: slot.kind === "dynamic" ? formatHandle(this.refOf(slot)) : null,
    }));
  }

  // ----- helpers ------------------------------------------------------------------------------------

  private startIfAllowed(slot: Slot): void {
    if (!this.started || !slot.registered || slot.pid !== null || slot.spawning || this.shutdownMode !== null) return;
    if (!mayStart(slot.definition.startTime, this.phase) || (this.crashRecovery && slot.definition.shmem)) {
      this.setState(slot, "waiting");
      return;
    }
    if (slot.lastExit !== null) slot.restarts += 1;
    slot.spawning = true;
    this.setState(slot, "starting");
    this.emit({ type: "spawn", slot: slot.index, generation: slot.generation, definition: slot.definition });
  }

  private unregister(slot: Slot): void {
    if (slot.state === "backoff") this.emit({ type: "clearTimer", key: restartTimer(slot) });
    slot.registered = false;
    slot.backoffMs = null;
    this.setState(slot, "stopped");
    if (slot.kind === "dynamic" || slot.terminated) {
      this.emit({ type: "log", level: "DEBUG", message: `unregistering background worker "${slot.definition.name}"`, worker: workerOf(slot) });
    }
  }

  private setState(slot: Slot, state: WorkerState): void {
    slot.state = state;
  }

  private liveSlot(ref: HandleRef): Slot | undefined {
    if (ref.postmaster !== this.postmasterId) return undefined;
    const slot = this.slots[ref.slot];
    if (slot === undefined || slot.generation !== ref.generation || !slot.registered) return undefined;
    return slot;
  }

  private slotOf(index: number, generation: number): Slot | undefined {
    const slot = this.slots[index];
    return slot !== undefined && slot.generation === generation ? slot : undefined;
  }

  private refOf(slot: Slot): HandleRef {
    return { postmaster: this.postmasterId, slot: slot.index, generation: slot.generation };
  }

  private emit(action: Action): void {
    this.actions.push(action);
  }

  private flush(): Action[] {
    const actions = this.actions;
    this.actions = [];
    return actions;
  }
}

function rank(phase: Phase): number {
  return phase === "starting" ? 0 : phase === "consistent" ? 1 : 2;
}
