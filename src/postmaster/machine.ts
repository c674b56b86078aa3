/**
 * The postmaster's state machine: the slot table and every decision about it (start, restart, crash,
 * terminate, shutdown), with no I/O.
 *
 * Who may change what (as bgworker.c says of its BackgroundWorkerSlot array):
 * - This machine is the only writer of the postmaster's lifecycle, its phase, the slots, the pid -> slot map,
 *   what is known of each worker process (its pid, when it was forked, its database session's backend pid)
 *   and the set of timers; it changes them only inside its event methods (`registerStatic`, `start`,
 *   `launch`, `forked`, `entered`, `session`, `exited`, `timer`, ...), each of which returns the actions the
 *   change calls for.
 * - The shell (shell.ts) never writes any of it and keeps no worker state of its own: it feeds every event
 *   through one queue, one at a time, and carries out the returned actions (fork, signal, arm or disarm a
 *   timer, log, reset shared memory). What an action leads to (a pid, a failed fork, a timer firing) comes
 *   back as a later event, never by calling in while actions are being carried out. `Postmaster`
 *   (postmaster.ts) is only the public front of the shell and never reaches the machine.
 * - A slot's run is a tagged union replaced whole on each transition: each variant carries exactly the data
 *   that is true in it (only a forked process has a pid; only a pending restart has a delay).
 * - Everyone else reads through the queries (`rows`, `handleState`, `notifyPidOf`, `workerOfPid`,
 *   `sinceOf`, `lifecycle`, `currentPhase`, `shuttingDown`).
 * PostgreSQL's postmaster is likewise the only writer of its `BackgroundWorkerList`.
 */
import { START_TIME_NAMES, type WorkerDefinition } from "../definition.js";
import { BackgroundWorkerStatus, makeError, NoFreeWorkerSlotError } from "../errors.js";
import { formatHandle, type HandleRef, type HandleState } from "../handle-format.js";
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

/** A timer the machine asks for, named by what it is for: the shell keys its timers by it and hands it back. */
export type TimerKey =
  | { readonly kind: "restart"; readonly slot: number; readonly generation: number }
  | { readonly kind: "shutdown-kill" };

export type Action =
  | { readonly type: "spawn"; readonly slot: number; readonly generation: number; readonly definition: WorkerDefinition }
  | { readonly type: "signal"; readonly pid: number; readonly signal: "SIGTERM" | "SIGKILL" | "SIGHUP" }
  | { readonly type: "setTimer"; readonly key: TimerKey; readonly delayMs: number }
  | { readonly type: "clearTimer"; readonly key: TimerKey }
  | { readonly type: "log"; readonly level: LogLevel; readonly message: string; readonly worker?: WorkerName }
  /** Every shared-memory worker is gone after a crash: re-create the segment, re-run startup hooks, then feed `shmemReset`. */
  | { readonly type: "resetShmem" }
  /** Shutdown finished: every worker process is gone. The shell closes up, then feeds `closed`. */
  | { readonly type: "shutdownComplete"; readonly mode: ShutdownMode };

/** What `bgworker restart` names: a worker's pid, its handle, or every registered worker of a type. */
export type RestartTarget = { readonly pid: number } | { readonly handle: HandleRef } | { readonly type: string };

/**
 * The postmaster's own life: `new`, `loading` while extensions run `_PG_init` (static registration is open),
 * `starting` once workers may start, `running` once everything is served, then `stopping` and `stopped`.
 */
export type Lifecycle = "new" | "loading" | "starting" | "running" | "stopping" | "stopped";

export interface MachineOptions {
  readonly postmasterId: string;
  readonly maxWorkerProcesses: number;
  readonly restartBackoff?: RestartBackoff;
  /** Without a database, workers that request SPI are refused. */
  readonly databaseServed: boolean;
  /** Fast shutdown: SIGKILL what remains this long after SIGTERM. */
  readonly shutdownTimeoutMs: number;
}

/** Facts about a run that has a process (or is about to). */
interface RunFacts {
  /**
   * Terminated through its handle or by pid (bgworker.c's `terminate`): the registration ends with this run,
   * whatever its exit; never restarted.
   */
  readonly terminated: boolean;
}

/**
 * Why the postmaster itself stopped a worker process, making its exit expected rather than a failure:
 * - `null`: not stopped by the postmaster for either reason below (a shutdown or a lost database also send
 *   signals, but need no mark: the shutdown mode and the restart rules decide their exits);
 * - `"restart"`: `bgworker restart` sent SIGTERM; started again as soon as it exits, whatever its restart time;
 * - `"crash"`: SIGKILLed as part of a crash-restart; its exit is not another crash, and it comes back with
 *   the re-created segment if it has a restart time.
 * A crash-restart replaces `"restart"` with `"crash"`; a restart is not asked of a run already stopping.
 */
type Stopping = null | "restart" | "crash";

/**
 * A run's `terminated` and `stopping` together, and what the exit of its process leads to (`exited`):
 *
 * | terminated | stopping    | at exit                                                                       |
 * | ---------- | ----------- | ----------------------------------------------------------------------------- |
 * | false      | null        | the restart rules: done, or no restart time: unregistered; failed: restarted after its restart time (damped); a shared-memory crash: crash-restart of the others |
 * | false      | "restart"   | started again at once, unless a shared-memory crash or a shutdown decides otherwise |
 * | false      | "crash"     | waits for the re-created segment if it has a restart time, else unregistered  |
 * | true       | null        | unregistered (a shared-memory crash still crash-restarts the others)          |
 * | true       | "crash"     | unregistered                                                                  |
 * | true       | "restart"   | never: terminating a run drops a pending restart                              |
 */
interface ProcessFacts extends RunFacts {
  readonly pid: number;
  /** When the process was forked for this worker: the start of its uptime in the status. */
  readonly since: number;
  /**
   * When the run began, for the restart-storm rule: when its function was entered, or when the process was
   * forked if it never got that far. Import time is not held against the worker.
   */
  readonly runStartedAt: number;
  readonly stopping: Stopping;
  /** The server process id of the worker's database session (SPEC §7), once it has opened one. */
  readonly backendPid: number | null;
}

/** Where a slot's worker is in its life. */
type Run =
  /** Registered; starts when its start time, the crash rule and shutdown allow. */
  | { readonly state: "waiting" }
  /** Registered; a restart is pending until its timer fires. */
  | { readonly state: "backoff"; readonly delayMs: number }
  /** A spawn was asked for and its pid is not known yet. */
  | ({ readonly state: "spawning" } & RunFacts)
  /** The process exists; its function has not been entered yet. */
  | ({ readonly state: "starting" } & ProcessFacts)
  /** The function has been entered: Started. */
  | ({ readonly state: "running" } & ProcessFacts)
  /** Unregistered (done, terminated, given up); the row shows the last run until the slot is reused. */
  | { readonly state: "stopped" };

interface Slot {
  readonly index: number;
  readonly generation: number;
  readonly definition: WorkerDefinition;
  readonly kind: "static" | "dynamic";
  run: Run;
  restarts: number;
  fastFailures: number;
  lastExit: LastExit | null;
  /**
   * The pid of the slot's last process once it has exited, until another exits: output it leaves behind
   * (drained after its exit) is still named after its worker.
   */
  lastPid: number | null;
  notifyPid: number;
}

type WithProcess = Slot & { run: Extract<Run, { pid: number }> };
type Occupied = Slot & { run: Extract<Run, { terminated: boolean }> };

const SHUTDOWN_ORDER: Readonly<Record<ShutdownMode, number>> = { smart: 1, fast: 2, immediate: 3 };
const SHUTDOWN_KILL: TimerKey = Object.freeze({ kind: "shutdown-kill" });

function restartTimer(slot: Slot): TimerKey {
  return { kind: "restart", slot: slot.index, generation: slot.generation };
}

function pidOf(slot: Slot): number | null {
  return "pid" in slot.run ? slot.run.pid : null;
}

function hasProcess(slot: Slot): slot is WithProcess {
  return "pid" in slot.run;
}

/** A process exists or is being made for the slot. */
function occupied(slot: Slot): slot is Occupied {
  return "terminated" in slot.run;
}

function registered(slot: Slot): boolean {
  return slot.run.state !== "stopped";
}

/** How the log names a worker (and its process, if it has one). */
export interface WorkerName {
  readonly name: string;
  readonly type: string;
  readonly pid?: number;
}

function workerOf(slot: Slot): WorkerName {
  const pid = pidOf(slot);
  return pid === null ? { name: slot.definition.name, type: slot.definition.type } : { name: slot.definition.name, type: slot.definition.type, pid };
}

export class PostmasterMachine {
  readonly postmasterId: string;
  readonly maxWorkerProcesses: number;
  readonly #backoff: RestartBackoff;
  readonly #databaseServed: boolean;
  readonly #shutdownTimeoutMs: number;
  readonly #slots: Slot[] = [];
  /** Which slot each live worker process occupies. */
  readonly #slotByPid = new Map<number, Slot>();
  #lifecycle: Lifecycle = "new";
  #phase: Phase = "starting";
  #shutdownMode: ShutdownMode | null = null;
  #shutdownDone = false;
  /** Set between a shared-memory crash and the re-creation of the segment. */
  #crashRecovery = false;
  #actions: Action[] = [];

  constructor(options: MachineOptions) {
    this.postmasterId = options.postmasterId;
    this.maxWorkerProcesses = options.maxWorkerProcesses;
    this.#backoff = options.restartBackoff ?? DEFAULT_RESTART_BACKOFF;
    this.#databaseServed = options.databaseServed;
    this.#shutdownTimeoutMs = options.shutdownTimeoutMs;
  }

  // ----- registration -------------------------------------------------------------------------------

  /** The postmaster begins to start: extensions are loaded next. Throws unless it is new. */
  begin(): Action[] {
    if (this.#lifecycle !== "new") {
      throw makeError(Error, "ERR_BGWORKER_POSTMASTER_STATE", `Postmaster.start: this postmaster is already ${this.#lifecycle}`);
    }
    this.#lifecycle = "loading";
    return this.#flush();
  }

  /** A static worker from `_PG_init`. Only before `start`; throws, as `launch`, when it cannot be registered. */
  registerStatic(definition: WorkerDefinition): Action[] {
    if (!this.#registering()) {
      throw makeError(Error, "ERR_BGWORKER_POSTMASTER_STATE", `background worker "${definition.name}": static workers can only be registered before the postmaster starts`);
    }
    this.#checkDatabaseAccess(definition);
    if (this.#slots.length >= this.maxWorkerProcesses) {
      throw makeError(
        RangeError,
        "ERR_BGWORKER_NO_FREE_SLOT",
        `load: background worker "${definition.name}" does not fit: all ${this.maxWorkerProcesses} worker slots ` +
          `(maxWorkerProcesses) are taken by static workers`,
      );
    }
    this.#slots.push(this.#newSlot(this.#slots.length, definition, "static", 0));
    return this.#flush();
  }

  /** The postmaster is up (extensions loaded, shared memory made): start what the current phase allows. */
  start(): Action[] {
    if (this.#registering()) this.#lifecycle = "starting";
    for (const slot of this.#slots) {
      this.#emit({ type: "log", level: "DEBUG", message: `registering background worker "${slot.definition.name}"` });
      this.#startIfAllowed(slot);
    }
    return this.#flush();
  }

  /** Everything the postmaster serves is open (control socket, database). */
  ready(): Action[] {
    if (this.#lifecycle === "starting") this.#lifecycle = "running";
    return this.#flush();
  }

  /** The shell has closed up after `shutdownComplete`, or the postmaster was stopped before it started. */
  closed(): Action[] {
    this.#lifecycle = "stopped";
    return this.#flush();
  }

  /**
   * A dynamic worker. Throws `NoFreeWorkerSlotError` when every slot is taken, an Error while shutting down
   * or stopped, a TypeError for SPI without a database.
   */
  launch(definition: WorkerDefinition): { ref: HandleRef; actions: Action[] } {
    if (this.#shutdownMode !== null || this.#lifecycle === "stopping" || this.#lifecycle === "stopped") {
      throw makeError(Error, "ERR_BGWORKER_SHUTTING_DOWN", `cannot register background worker "${definition.name}": the postmaster is shutting down`);
    }
    this.#checkDatabaseAccess(definition);
    let slot = this.#slots.find((s) => s.run.state === "stopped");
    if (slot === undefined) {
      if (this.#slots.length >= this.maxWorkerProcesses) {
        throw new NoFreeWorkerSlotError(
          `cannot register background worker "${definition.name}": all ${this.maxWorkerProcesses} worker slots ` +
            `(maxWorkerProcesses) are in use`,
        );
      }
      slot = this.#newSlot(this.#slots.length, definition, "dynamic", 0);
      this.#slots.push(slot);
    } else {
      // Reusing a slot moves its generation on, so handles to its previous worker report Stopped.
      slot = this.#newSlot(slot.index, definition, "dynamic", slot.generation);
      this.#slots[slot.index] = slot;
    }
    this.#startIfAllowed(slot);
    return { ref: this.#refOf(slot), actions: this.#flush() };
  }

  #newSlot(index: number, definition: WorkerDefinition, kind: "static" | "dynamic", previousGeneration: number): Slot {
    return {
      index,
      generation: previousGeneration + 1,
      definition,
      kind,
      run: { state: "waiting" },
      restarts: 0,
      fastFailures: 0,
      lastExit: null,
      lastPid: null,
      notifyPid: definition.notifyPid,
    };
  }

  #checkDatabaseAccess(definition: WorkerDefinition): void {
    if (definition.spi && !this.#databaseServed) {
      throw makeError(
        TypeError,
        "ERR_BGWORKER_NO_DATABASE",
        `background worker "${definition.name}" requests database access (enableSpiAccess), but this postmaster serves no database (--no-database)`,
      );
    }
  }

  // ----- process life -------------------------------------------------------------------------------

  /** The process for a `spawn` action exists. */
  forked(slotIndex: number, generation: number, pid: number, now: number): Action[] {
    const slot = this.#slotAt(slotIndex, generation);
    if (slot === undefined || slot.run.state !== "spawning") return this.#flush();
    const { terminated } = slot.run;
    slot.run = { state: "starting", pid, since: now, runStartedAt: now, terminated, stopping: null, backendPid: null };
    this.#slotByPid.set(pid, slot);
    this.#emit({ type: "log", level: "DEBUG", message: `started background worker "${slot.definition.name}" (PID ${pid})`, worker: workerOf(slot) });
    // Decisions taken while the process did not exist yet apply to it now.
    if (this.#shutdownMode === "immediate") this.#emit({ type: "signal", pid, signal: "SIGKILL" });
    else if (this.#shutdownMode === "fast" || terminated) this.#emit({ type: "signal", pid, signal: "SIGTERM" });
    else if (this.#crashRecovery && slot.definition.shmem) {
      slot.run = { ...slot.run, stopping: "crash" };
      this.#emit({ type: "signal", pid, signal: "SIGKILL" });
    }
    return this.#flush();
  }

  /** The function of the worker with this pid has been entered: it counts as Started. */
  entered(pid: number, now: number): Action[] {
    const slot = this.#slotByPid.get(pid);
    if (slot !== undefined && slot.run.state === "starting") slot.run = { ...slot.run, state: "running", runStartedAt: now };
    return this.#flush();
  }

  /** The worker with this pid has opened its database session, served by the server process `backendPid`. */
  session(pid: number, backendPid: number): Action[] {
    const slot = this.#slotByPid.get(pid);
    if (slot !== undefined && hasProcess(slot)) slot.run = { ...slot.run, backendPid };
    return this.#flush();
  }

  /** A spawn failed before a process existed; PostgreSQL counts a failed fork as exit code 1. */
  spawnFailed(slotIndex: number, generation: number, error: string, now: number): Action[] {
    const slot = this.#slotAt(slotIndex, generation);
    if (slot === undefined || slot.run.state !== "spawning") return this.#flush();
    const { terminated } = slot.run;
    this.#emit({ type: "log", level: "LOG", message: `could not fork background worker process "${slot.definition.name}": ${error}`, worker: workerOf(slot) });
    this.#afterExit(slot, { code: 1, signal: null, at: new Date(now).toISOString() }, 0, terminated);
    this.#afterAnyExit();
    return this.#flush();
  }

  /** A process ended: a worker (its slot decides what follows) or any other (its notifications are cancelled). */
  exited(pid: number, code: number | null, signal: string | null, now: number): Action[] {
    this.#releaseNotifications(pid);
    const slot = this.#slotByPid.get(pid);
    if (slot === undefined || !("pid" in slot.run)) return this.#flush();
    this.#slotByPid.delete(pid);
    slot.lastPid = pid;
    const { terminated, stopping, runStartedAt } = slot.run;
    const lastExit: LastExit = { code, signal, at: new Date(now).toISOString() };
    const crashed = classifyExit(code, signal) === "crashed" && slot.definition.shmem;
    this.#emit({ type: "log", level: "LOG", message: `background worker "${slot.definition.type}" (PID ${pid}) ${describeExit(code, signal)}`, worker: workerOf(slot) });
    if (stopping === "restart" && !crashed && this.#shutdownMode === null) {
      // An administrator's restart: a new process now; its stop was asked for, so it is no failure.
      slot.lastExit = lastExit;
      slot.fastFailures = 0;
      slot.run = { state: "waiting" };
      this.#startIfAllowed(slot);
    } else if (stopping === "crash") {
      slot.lastExit = lastExit;
      // Killed as part of a crash-restart: restartable workers come back when the segment is re-created.
      if (slot.definition.restartTimeMs === null || terminated || this.#shutdownMode !== null) this.#unregister(slot, terminated);
      else slot.run = { state: "waiting" };
    } else if (crashed && this.#shutdownMode === null) {
      this.#crash(slot, lastExit, now - runStartedAt, terminated);
    } else {
      this.#afterExit(slot, lastExit, now - runStartedAt, terminated);
    }
    this.#afterAnyExit();
    return this.#flush();
  }

  /** Exit 0, exit 1, or a crash that does not involve shared memory (handled like exit 1). */
  #afterExit(slot: Slot, lastExit: LastExit, runMs: number, terminated: boolean): void {
    slot.lastExit = lastExit;
    const kind = classifyExit(lastExit.code, lastExit.signal);
    if (kind === "done" || terminated || slot.definition.restartTimeMs === null || this.#shutdownMode !== null) {
      this.#unregister(slot, terminated);
      return;
    }
    this.#scheduleRestart(slot, runMs, slot.definition.restartTimeMs);
  }

  #scheduleRestart(slot: Slot, runMs: number, restartTimeMs: number): void {
    slot.fastFailures = nextFastFailures(slot.fastFailures, runMs, this.#backoff);
    const extra = dampingDelay(slot.fastFailures, this.#backoff);
    const delay = Math.max(restartTimeMs, extra);
    if (extra > 0 && extra > restartTimeMs) {
      this.#emit({
        type: "log",
        level: "LOG",
        message:
          `background worker "${slot.definition.type}" failed ${slot.fastFailures} times in a row within ` +
          `${this.#backoff.fastFailureMs} ms of starting; delaying its restart by ${delay} ms`,
        worker: workerOf(slot),
      });
    }
    this.#backoffFor(slot, delay);
  }

  #backoffFor(slot: Slot, delayMs: number): void {
    slot.run = { state: "backoff", delayMs };
    this.#emit({ type: "setTimer", key: restartTimer(slot), delayMs });
  }

  /** PostgreSQL's crash rule, narrowed to the workers that share memory with the one that crashed. */
  #crash(slot: Slot, lastExit: LastExit, runMs: number, terminated: boolean): void {
    slot.lastExit = lastExit;
    this.#emit({ type: "log", level: "LOG", message: "terminating any other active server processes that use shared memory" });
    this.#crashRecovery = true;
    for (const other of this.#slots) {
      if (other === slot || !other.definition.shmem) continue;
      if (hasProcess(other)) {
        other.run = { ...other.run, stopping: "crash" };
        this.#emit({ type: "signal", pid: other.run.pid, signal: "SIGKILL" });
      } else if (other.run.state === "backoff") {
        // A pending restart of a shared-memory worker waits for the re-created segment like the rest.
        this.#emit({ type: "clearTimer", key: restartTimer(other) });
        other.run = { state: "waiting" };
      }
    }
    if (slot.definition.restartTimeMs === null || terminated) {
      this.#unregister(slot, terminated);
    } else {
      slot.fastFailures = nextFastFailures(slot.fastFailures, runMs, this.#backoff);
      slot.run = { state: "waiting" };
    }
  }

  /** The segment has been re-created and the startup hooks re-run: bring the shared-memory workers back. */
  shmemReset(): Action[] {
    if (!this.#crashRecovery) return this.#flush();
    this.#crashRecovery = false;
    for (const slot of this.#slots) {
      if (!slot.definition.shmem || slot.run.state !== "waiting") continue;
      const extra = dampingDelay(slot.fastFailures, this.#backoff);
      if (extra > 0) this.#backoffFor(slot, extra);
      else this.#startIfAllowed(slot);
    }
    return this.#flush();
  }

  #afterAnyExit(): void {
    if (this.#crashRecovery && !this.#slots.some((s) => s.definition.shmem && occupied(s))) {
      this.#emit({ type: "log", level: "LOG", message: "all shared-memory workers terminated; reinitializing shared memory" });
      this.#emit({ type: "resetShmem" });
    }
    this.#advanceShutdown();
  }

  /** A timer the machine set has fired. */
  timer(key: TimerKey): Action[] {
    if (key.kind === "shutdown-kill") {
      for (const slot of this.#slots) if (hasProcess(slot)) this.#emit({ type: "signal", pid: slot.run.pid, signal: "SIGKILL" });
      return this.#flush();
    }
    const slot = this.#slotAt(key.slot, key.generation);
    if (slot !== undefined && slot.run.state === "backoff") {
      slot.run = { state: "waiting" };
      this.#startIfAllowed(slot);
    }
    return this.#flush();
  }

  // ----- database -----------------------------------------------------------------------------------

  setPhase(phase: Phase): Action[] {
    if (phase === this.#phase) return this.#flush();
    const rising = rank(phase) > rank(this.#phase);
    this.#phase = phase;
    if (rising) {
      for (const slot of this.#slots) if (slot.run.state === "waiting") this.#startIfAllowed(slot);
    } else {
      // Database lost: its sessions are gone, so SPI workers stop and come back by their restart rules.
      for (const slot of this.#slots) {
        if (slot.definition.spi && hasProcess(slot) && !mayStart(slot.definition.startTime, phase)) {
          this.#emit({ type: "signal", pid: slot.run.pid, signal: "SIGTERM" });
        }
      }
    }
    return this.#flush();
  }

  // ----- requests -----------------------------------------------------------------------------------

  /** Terminate through a handle: SIGTERM if running, unregister if not started; never restarted. */
  terminate(ref: HandleRef): Action[] {
    const slot = this.#liveSlot(ref);
    if (slot !== undefined) this.#terminateSlot(slot);
    return this.#flush();
  }

  /** Terminate the worker with this pid; false when no worker has it. */
  terminatePid(pid: number): { found: boolean; actions: Action[] } {
    const slot = this.#slotByPid.get(pid);
    if (slot !== undefined) this.#terminateSlot(slot);
    return { found: slot !== undefined, actions: this.#flush() };
  }

  #terminateSlot(slot: Slot): void {
    if (occupied(slot)) {
      slot.run = { ...slot.run, terminated: true };
      if (hasProcess(slot)) {
        // A restart asked for earlier is dropped: a terminated worker never starts again.
        if (slot.run.stopping === "restart") slot.run = { ...slot.run, stopping: null };
        this.#emit({ type: "signal", pid: slot.run.pid, signal: "SIGTERM" });
      }
    } else if (registered(slot)) {
      this.#unregister(slot, true);
    }
  }

  /**
   * `bgworker restart`: a new process for each worker matched, now, whatever its restart time, counted in its
   * restarts. A running worker gets SIGTERM and starts again as soon as it exits; one in backoff starts at
   * once; one starting already is left to start; one waiting for its start time keeps waiting. Returns how
   * many registered workers matched; a terminated one is not restarted.
   */
  restart(target: RestartTarget): { matched: number; actions: Action[] } {
    if (this.#shutdownMode !== null || this.#registering()) {
      throw makeError(Error, "ERR_BGWORKER_POSTMASTER_STATE", `cannot restart background workers: the postmaster is ${this.#shutdownMode !== null ? "shutting down" : "starting"}`);
    }
    const slots = this.#restartTargets(target);
    for (const slot of slots) this.#restartSlot(slot);
    return { matched: slots.length, actions: this.#flush() };
  }

  #restartTargets(target: RestartTarget): Slot[] {
    if ("pid" in target) {
      const slot = this.#slotByPid.get(target.pid);
      return slot === undefined ? [] : [slot];
    }
    if ("handle" in target) {
      const slot = this.#liveSlot(target.handle);
      return slot === undefined ? [] : [slot];
    }
    return this.#slots.filter((slot) => registered(slot) && slot.definition.type === target.type);
  }

  #restartSlot(slot: Slot): void {
    if (hasProcess(slot)) {
      if (slot.run.terminated || slot.run.stopping !== null) return;
      slot.run = { ...slot.run, stopping: "restart" };
      this.#emit({ type: "log", level: "LOG", message: `restarting background worker "${slot.definition.type}" (PID ${slot.run.pid}) at administrator request`, worker: workerOf(slot) });
      this.#emit({ type: "signal", pid: slot.run.pid, signal: "SIGTERM" });
    } else if (slot.run.state === "backoff") {
      this.#emit({ type: "clearTimer", key: restartTimer(slot) });
      this.#emit({ type: "log", level: "LOG", message: `restarting background worker "${slot.definition.type}" now at administrator request`, worker: workerOf(slot) });
      slot.fastFailures = 0;
      slot.run = { state: "waiting" };
      this.#startIfAllowed(slot);
    }
  }

  /** A process that may be a notify pid is gone (a worker, or a client's last connection): its notifications are cancelled. */
  clientGone(pid: number): Action[] {
    this.#releaseNotifications(pid);
    return this.#flush();
  }

  #releaseNotifications(pid: number): void {
    for (const slot of this.#slots) if (slot.notifyPid === pid) slot.notifyPid = 0;
  }

  /**
   * SIGHUP or `bgworker reload`, as PostgreSQL's postmaster: its log line, then SIGHUP to every running worker
   * (which sets its flag and latch where attached, and is ignored otherwise). Nothing stops or restarts. A
   * worker still starting is left out: a process still booting Node has no handler yet and SIGHUP would kill
   * it (PostgreSQL blocks signals there), and it reads its settings as it starts anyway.
   */
  reload(): Action[] {
    if (this.#lifecycle === "new" || this.#lifecycle === "stopped") return this.#flush();
    this.#emit({ type: "log", level: "LOG", message: "received SIGHUP, reloading configuration files" });
    for (const slot of this.#slots) {
      if (slot.run.state === "running") this.#emit({ type: "signal", pid: slot.run.pid, signal: "SIGHUP" });
    }
    return this.#flush();
  }

  /**
   * Smart, fast or immediate shutdown; a stronger mode may follow a weaker one, as with pg_ctl. `cause` replaces
   * "received MODE shutdown request" in the log, as a FATAL line, when nobody asked for one (a start-up that
   * failed): the one line that says why the postmaster is going away.
   */
  shutdown(mode: ShutdownMode, cause?: string): Action[] {
    if (this.#shutdownMode !== null && SHUTDOWN_ORDER[mode] <= SHUTDOWN_ORDER[this.#shutdownMode]) return this.#flush();
    this.#shutdownMode = mode;
    if (this.#lifecycle !== "stopped") this.#lifecycle = "stopping";
    this.#emit(
      cause === undefined
        ? { type: "log", level: "LOG", message: `received ${mode} shutdown request` }
        : { type: "log", level: "FATAL", message: cause },
    );
    // Nothing new starts from now on: forget what has not started, so its waiters are told.
    for (const slot of this.#slots) if (registered(slot) && !occupied(slot)) this.#unregister(slot, false);
    if (mode === "fast") this.#stopAll("SIGTERM");
    else if (mode === "immediate") this.#stopAll("SIGKILL");
    this.#advanceShutdown();
    return this.#flush();
  }

  #stopAll(signal: "SIGTERM" | "SIGKILL"): void {
    for (const slot of this.#slots) if (hasProcess(slot)) this.#emit({ type: "signal", pid: slot.run.pid, signal });
    if (signal === "SIGTERM") this.#emit({ type: "setTimer", key: SHUTDOWN_KILL, delayMs: this.#shutdownTimeoutMs });
  }

  #advanceShutdown(): void {
    if (this.#shutdownMode === null || this.#shutdownDone) return;
    // Smart: dynamic workers may finish their work; once they have, the rest stop as in a fast shutdown.
    if (this.#shutdownMode === "smart" && !this.#slots.some((s) => s.kind === "dynamic" && occupied(s))) {
      this.#shutdownMode = "fast";
      this.#emit({ type: "log", level: "LOG", message: "no dynamic background workers left; stopping the others" });
      this.#stopAll("SIGTERM");
    }
    if (this.#slots.some(occupied)) return;
    this.#shutdownDone = true;
    this.#emit({ type: "clearTimer", key: SHUTDOWN_KILL });
    this.#emit({ type: "shutdownComplete", mode: this.#shutdownMode });
  }

  // ----- queries ------------------------------------------------------------------------------------

  /** PostgreSQL's `GetBackgroundWorkerPid`, with Started meaning the function has been entered. */
  handleState(ref: HandleRef): HandleState {
    const slot = this.#liveSlot(ref);
    if (slot === undefined) return { status: BackgroundWorkerStatus.Stopped };
    if (slot.run.state === "running") return { status: BackgroundWorkerStatus.Started, pid: slot.run.pid };
    return { status: BackgroundWorkerStatus.NotYetStarted };
  }

  /**
   * The notify pid of the worker a handle names (0 once its notifications were cancelled), still known after
   * it stopped, until its slot is reused; undefined once nobody can tell.
   */
  notifyPidOf(ref: HandleRef): number | undefined {
    if (ref.postmaster !== this.postmasterId) return undefined;
    const slot = this.#slots[ref.slot];
    return slot !== undefined && slot.generation === ref.generation ? slot.notifyPid : undefined;
  }

  get lifecycle(): Lifecycle {
    return this.#lifecycle;
  }

  get currentPhase(): Phase {
    return this.#phase;
  }

  get shuttingDown(): ShutdownMode | null {
    return this.#shutdownMode;
  }

  /** Whether the slot's `spawn` still waits for its process (`forked` or `spawnFailed`). */
  awaitsProcess(slotIndex: number, generation: number): boolean {
    return this.#slotAt(slotIndex, generation)?.run.state === "spawning";
  }

  /**
   * The worker a process runs, or ran last in a slot not reused since, for naming its output and log lines;
   * undefined for any other process (a spare runner).
   */
  workerOfPid(pid: number): (WorkerName & { readonly pid: number }) | undefined {
    const slot = this.#slotByPid.get(pid) ?? this.#slots.find((s) => s.lastPid === pid);
    return slot === undefined ? undefined : { name: slot.definition.name, type: slot.definition.type, pid };
  }

  /** When the live worker process with this pid was forked for its worker (ms since the epoch). */
  sinceOf(pid: number): number | undefined {
    const slot = this.#slotByPid.get(pid);
    return slot !== undefined && hasProcess(slot) ? slot.run.since : undefined;
  }

  rows(): WorkerStatusRow[] {
    return this.#slots.map((slot) => ({
      slot: slot.index,
      name: slot.definition.name,
      type: slot.definition.type,
      pid: pidOf(slot),
      state: rowState(slot.run),
      startTime: START_TIME_NAMES[slot.definition.startTime] as WorkerStatusRow["startTime"],
      restartTimeMs: slot.definition.restartTimeMs,
      restarts: slot.restarts,
      lastExit: slot.lastExit,
      notifyPid: slot.notifyPid,
      kind: slot.kind,
      spi: slot.definition.spi,
      shmem: slot.definition.shmem,
      backoffMs: slot.run.state === "backoff" ? slot.run.delayMs : null,
      handle: slot.kind === "dynamic" ? formatHandle(this.#refOf(slot)) : null,
      backendPid: hasProcess(slot) ? slot.run.backendPid : null,
    }));
  }

  // ----- helpers ------------------------------------------------------------------------------------

  /** Before `start`: static registration is open and no worker starts yet. */
  #registering(): boolean {
    return this.#lifecycle === "new" || this.#lifecycle === "loading";
  }

  #startIfAllowed(slot: Slot): void {
    if (this.#registering() || slot.run.state !== "waiting" || this.#shutdownMode !== null) return;
    if (!mayStart(slot.definition.startTime, this.#phase) || (this.#crashRecovery && slot.definition.shmem)) return;
    if (slot.lastExit !== null) slot.restarts += 1;
    slot.run = { state: "spawning", terminated: false };
    this.#emit({ type: "spawn", slot: slot.index, generation: slot.generation, definition: slot.definition });
  }

  #unregister(slot: Slot, terminated: boolean): void {
    if (slot.run.state === "backoff") this.#emit({ type: "clearTimer", key: restartTimer(slot) });
    slot.run = { state: "stopped" };
    if (slot.kind === "dynamic" || terminated) {
      this.#emit({ type: "log", level: "DEBUG", message: `unregistering background worker "${slot.definition.name}"`, worker: workerOf(slot) });
    }
  }

  #liveSlot(ref: HandleRef): Slot | undefined {
    if (ref.postmaster !== this.postmasterId) return undefined;
    const slot = this.#slotAt(ref.slot, ref.generation);
    return slot !== undefined && registered(slot) ? slot : undefined;
  }

  #slotAt(index: number, generation: number): Slot | undefined {
    const slot = this.#slots[index];
    return slot !== undefined && slot.generation === generation ? slot : undefined;
  }

  #refOf(slot: Slot): HandleRef {
    return { postmaster: this.postmasterId, slot: slot.index, generation: slot.generation };
  }

  #emit(action: Action): void {
    this.#actions.push(action);
  }

  #flush(): Action[] {
    const actions = this.#actions;
    this.#actions = [];
    return actions;
  }
}

/** The row's state: a spawn under way shows as starting, as the process is being made. */
function rowState(run: Run): WorkerState {
  return run.state === "spawning" ? "starting" : run.state;
}

function rank(phase: Phase): number {
  return phase === "starting" ? 0 : phase === "consistent" ? 1 : 2;
}
