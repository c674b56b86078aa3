/**
 * The postmaster's state machine: the slot table and every decision about it (start, restart, crash,
 * terminate, shutdown), with no I/O.
 *
 * Who may change what (as bgworker.c says of its BackgroundWorkerSlot array):
 * - This machine is the only writer of the postmaster's state (its stage, a shutdown in progress, a
 *   crash-restart in progress), its phase, the slots, the pid -> slot map, what is known of each worker
 *   process (its pid, when its runner was handed the worker, its database session's backend pid) and the
 *   set of timers. It changes them only in `handle(event)`: every input is a `MachineEvent`, plain data, and
 *   every answer is one shape, `{ actions, result }`. Events can therefore be logged and replayed: the same
 *   events from a new machine give the same actions.
 * - The shell (shell.ts) never writes any of it and keeps no worker state of its own: it feeds every event
 *   through one queue, one at a time, and carries out the returned actions (fork, signal, arm or disarm a
 *   timer, log, reset shared memory). What an action leads to (a pid, a failed fork, a timer firing) comes
 *   back as a later event, never by calling in while actions are being carried out. `Postmaster`
 *   (postmaster.ts) is only the public front of the shell and never reaches the machine.
 * - The postmaster's state and a slot's run are tagged unions replaced whole on each transition: each variant
 *   carries exactly the data that is true in it (only a shutdown has a mode; only a process has a pid; only a
 *   pending restart has a delay).
 * - Everyone else reads through the queries (`rows`, `handleState`, `notifyPidOf`, `workerOfPid`,
 *   `handedOverAt`, `state`, `lifecycle`, `currentPhase`, `shuttingDown`).
 * PostgreSQL's postmaster is likewise the only writer of its `BackgroundWorkerList`.
 */
import { START_TIME_NAMES, type WorkerDefinition } from "../definition.js";
import { BackgroundWorkerStatus, makeError, NoFreeWorkerSlotError } from "../errors.js";
import { formatHandle, type HandleRef, type HandleState } from "../handle-format.js";
import type { LogEvent } from "../log-events.js";
import type { LastExit, Phase, ShutdownMode, WorkerState, WorkerStatusRow } from "../status.js";
import {
  classifyExit,
  dampingDelay,
  DEFAULT_RESTART_BACKOFF,
  mayStart,
  nextFastFailures,
  type RestartBackoff,
} from "./rules.js";

/** A timer the machine asks for, named by what it is for: the shell keys its timers by it and hands it back. */
export type TimerKey =
  | { readonly kind: "restart"; readonly slot: number; readonly generation: number }
  | { readonly kind: "shutdown-kill" };

/**
 * What the machine tells a cluster-scoped worker's lease (cluster/lease-machine.ts) about its process: the
 * shell hands these to the lease, which alone decides when the worker may run on this node.
 * `final`: the postmaster will not start it again under this lease (unregistered: done, no restart time,
 * terminated, or shutting down).
 */
export type LeaseWorkerEvent =
  | { readonly kind: "worker-started"; readonly pid: number }
  | { readonly kind: "worker-exited"; readonly pid: number; readonly final: boolean };

export type Action =
  /**
   * `restart`: the worker ran before (a restart after an exit, or a crash-restart), so it goes ahead of
   * launches. `staticStart`: a static worker's first start, known since registration; the spare pool does not
   * grow for it as it does for launches it did not foresee. `fencingToken`: a cluster-scoped worker's lease
   * generation (SPEC §10), null for the others.
   */
  | {
      readonly type: "spawn";
      readonly slot: number;
      readonly generation: number;
      readonly definition: WorkerDefinition;
      readonly restart: boolean;
      readonly staticStart: boolean;
      readonly fencingToken: bigint | null;
    }
  | { readonly type: "signal"; readonly pid: number; readonly signal: "SIGTERM" | "SIGKILL" | "SIGHUP" }
  | { readonly type: "setTimer"; readonly key: TimerKey; readonly delayMs: number }
  | { readonly type: "clearTimer"; readonly key: TimerKey }
  /** A log line: the event's kind gives its level and text (log-events.ts). */
  | { readonly type: "log"; readonly event: LogEvent; readonly worker?: WorkerName }
  /** Every shared-memory worker is gone after a crash: re-create the segment, re-run startup hooks, then feed `shmem-reset`. */
  | { readonly type: "resetShmem" }
  /** Shutdown finished: every worker process is gone. The shell closes up, then feeds `closed`. */
  | { readonly type: "shutdownComplete"; readonly mode: ShutdownMode }
  /** A cluster-scoped worker's process started or exited: for its lease. */
  | { readonly type: "lease"; readonly worker: string; readonly event: LeaseWorkerEvent };

/** What `bgworker restart` names: a worker's pid, its handle, or every registered worker of a type. */
export type RestartTarget = { readonly pid: number } | { readonly handle: HandleRef } | { readonly type: string };

/** What a termination names: a worker's pid (`bgworker terminate`) or its handle. */
export type TerminateTarget = { readonly pid: number } | { readonly handle: HandleRef };

/**
 * Everything that can happen to the postmaster, as data. Times (`at`, ms since the epoch) travel in the
 * events, so the machine reads no clock and a replay of the same events gives the same actions.
 */
export type MachineEvent =
  /** The postmaster begins to start: extensions are loaded next. Refused unless it is new. */
  | { readonly kind: "begin" }
  /** A static worker from `_PG_init`; refused after `start`, or when it cannot be registered. */
  | { readonly kind: "register-static"; readonly definition: WorkerDefinition }
  /** Extensions are loaded and shared memory made: workers may start as the phase allows. */
  | { readonly kind: "start" }
  /** Everything the postmaster serves is open (control socket, database). */
  | { readonly kind: "ready" }
  /** The shell has closed up after `shutdownComplete`, or the postmaster was stopped before it started. */
  | { readonly kind: "closed" }
  /** A dynamic worker; refused when every slot is taken, while shutting down, or for SPI without a database. */
  | { readonly kind: "launch"; readonly definition: WorkerDefinition }
  /** A runner was handed the worker of a `spawn` action: from `at` on, process `pid` is that worker. */
  | { readonly kind: "handed-over"; readonly slot: number; readonly generation: number; readonly pid: number; readonly at: number }
  /** The worker with this pid has entered its function: it counts as Started. */
  | { readonly kind: "entered"; readonly pid: number; readonly at: number }
  /** The worker with this pid has opened its database session, served by the server process `backendPid`. */
  | { readonly kind: "session"; readonly pid: number; readonly backendPid: number }
  /** No runner could be had for a `spawn` action (PostgreSQL counts a failed fork as exit code 1). */
  | { readonly kind: "spawn-failed"; readonly slot: number; readonly generation: number; readonly reason: string; readonly at: number }
  /** A process ended: a worker (its slot decides what follows) or any other (its notifications are cancelled). */
  | { readonly kind: "exited"; readonly pid: number; readonly code: number | null; readonly signal: string | null; readonly at: number }
  /** The segment has been re-created and the startup hooks re-run after a crash. */
  | { readonly kind: "shmem-reset" }
  /** A timer the machine set has fired. */
  | { readonly kind: "timer"; readonly key: TimerKey }
  /** The served database's phase. */
  | { readonly kind: "phase"; readonly phase: Phase }
  /** Terminate a worker: SIGTERM if it has a process, unregistered if not; never restarted. */
  | { readonly kind: "terminate"; readonly target: TerminateTarget }
  /** `bgworker restart`; refused while starting or shutting down. */
  | { readonly kind: "restart"; readonly target: RestartTarget }
  /** A process that may be a notify pid is gone (a client's last connection): its notifications are cancelled. */
  | { readonly kind: "client-gone"; readonly pid: number }
  /** SIGHUP or `bgworker reload`. */
  | { readonly kind: "reload" }
  /**
   * Cluster mode: this node holds the lease of the cluster-scoped static worker `worker`, at `generation`
   * (its fencing token): it may start, and be restarted by its rules, until the lease is lost.
   */
  | { readonly kind: "lease-granted"; readonly worker: string; readonly generation: bigint }
  /**
   * Cluster mode: the lease is lost or given up: signal the worker; one without a process does not start.
   * Its exit is no failure, and it is not restarted: it waits for the lease again.
   */
  | { readonly kind: "lease-stop"; readonly worker: string; readonly signal: "SIGTERM" | "SIGKILL" }
  /**
   * Smart, fast or immediate shutdown. `startupFailure`, when nobody asked for a shutdown (a start-up that
   * failed), is logged as a FATAL line instead of "received MODE shutdown request".
   */
  | { readonly kind: "shutdown"; readonly mode: ShutdownMode; readonly startupFailure?: string };

export type MachineEventKind = MachineEvent["kind"];
type EventOf<K extends MachineEventKind> = Extract<MachineEvent, { readonly kind: K }>;

/** The events that answer with more than their actions, and what they answer. */
export interface EventResults {
  /** The new worker's handle. */
  readonly launch: HandleRef;
  /** Whether a registered worker was found (false: no worker has that pid, or the handle is stale). */
  readonly terminate: boolean;
  /** How many registered workers matched (0: none). */
  readonly restart: number;
}

export type ResultOf<K extends MachineEventKind> = K extends keyof EventResults ? EventResults[K] : undefined;

/** What `handle` returns for every event: the actions it calls for, and its result. */
export interface Outcome<K extends MachineEventKind = MachineEventKind> {
  readonly actions: Action[];
  readonly result: ResultOf<K>;
}

/**
 * The postmaster's own life, as the shell and `status` see it: `new`, `loading` while extensions run
 * `_PG_init` (static registration is open), `starting` once workers may start, `running` once everything is
 * served, then `stopping` and `stopped`.
 */
export type Lifecycle = "new" | "loading" | "starting" | "running" | "stopping" | "stopped";

/**
 * The postmaster's state, one tagged union:
 * - `recovering`: between a shared-memory worker's crash and the re-creation of the segment (only once
 *   workers may start, and carried into a shutdown that begins meanwhile);
 * - `mode`: the shutdown asked for; a stronger request upgrades it (smart to fast or immediate, fast to
 *   immediate), a milder one never downgrades it. It is what `status` reports;
 * - `sent`: what every worker process has been sent so far: nothing (a smart shutdown whose dynamic workers
 *   may still finish), SIGTERM (fast, or smart once no dynamic worker is left), SIGKILL (immediate). A
 *   process handed over from now on gets the same;
 * - `closing`: every worker process is gone (`shutdownComplete`), the shell closes up until `closed`.
 */
export type PostmasterState =
  | { readonly stage: "new" }
  | { readonly stage: "loading" }
  | { readonly stage: "starting"; readonly recovering: boolean }
  | { readonly stage: "running"; readonly recovering: boolean }
  | { readonly stage: "stopping"; readonly mode: ShutdownMode; readonly sent: null | "SIGTERM" | "SIGKILL"; readonly recovering: boolean }
  | { readonly stage: "closing"; readonly mode: ShutdownMode }
  | { readonly stage: "stopped"; readonly mode: ShutdownMode | null };

export interface MachineOptions {
  readonly postmasterId: string;
  readonly maxWorkerProcesses: number;
  readonly restartBackoff?: RestartBackoff;
  /** Without a database, workers that request SPI are refused. */
  readonly databaseServed: boolean;
  /** Fast shutdown: SIGKILL what remains this long after SIGTERM. */
  readonly shutdownTimeoutMs: number;
  /**
   * In a cluster (SPEC §10): cluster-scoped workers start only under a lease (`lease-granted`). Without it
   * they run as host-scoped ones.
   */
  readonly cluster?: boolean;
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
  /** When its runner was handed the worker: the start of its uptime in the status. */
  readonly handedOverAt: number;
  /**
   * When the run began, for the restart-storm rule: when its function was entered, or when its runner was
   * handed the worker if it never got that far. Import time is not held against the worker.
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
  /** A spawn was asked for and no runner has been handed the worker yet. */
  | ({ readonly state: "spawning" } & RunFacts)
  /** A runner has been handed the worker; its function has not been entered yet. */
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
  /**
   * Cluster-scoped workers in a cluster: the lease this node holds for it (its generation), null while it
   * does not; the worker starts only while it is set. Written only by `lease-granted` and `lease-stop`.
   */
  lease: bigint | null;
  /** What `lease-stop` has sent so far, for a process that is handed over after it (still spawning). */
  leaseStop: null | "SIGTERM" | "SIGKILL";
}

type WithProcess = Slot & { run: Extract<Run, { pid: number }> };
type Occupied = Slot & { run: Extract<Run, { terminated: boolean }> };

const SHUTDOWN_ORDER: Readonly<Record<ShutdownMode, number>> = { smart: 1, fast: 2, immediate: 3 };
const SHUTDOWN_KILL: TimerKey = Object.freeze({ kind: "shutdown-kill" });

const LIFECYCLE: Readonly<Record<PostmasterState["stage"], Lifecycle>> = {
  new: "new",
  loading: "loading",
  starting: "starting",
  running: "running",
  stopping: "stopping",
  closing: "stopping",
  stopped: "stopped",
};

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
  readonly #cluster: boolean;
  readonly #slots: Slot[] = [];
  /** Which slot each live worker process occupies. */
  readonly #slotByPid = new Map<number, Slot>();
  #state: PostmasterState = { stage: "new" };
  #phase: Phase = "starting";
  #actions: Action[] = [];

  /** One handler per event kind; the mapped type ties each kind to its event and its result. */
  readonly #handlers: { readonly [K in MachineEventKind]: (event: EventOf<K>) => ResultOf<K> } = {
    begin: () => this.#begin(),
    "register-static": (e) => this.#registerStatic(e.definition),
    start: () => this.#start(),
    ready: () => this.#ready(),
    closed: () => this.#closed(),
    launch: (e) => this.#launch(e.definition),
    "handed-over": (e) => this.#handedOver(e),
    entered: (e) => this.#entered(e.pid, e.at),
    session: (e) => this.#session(e.pid, e.backendPid),
    "spawn-failed": (e) => this.#spawnFailed(e),
    exited: (e) => this.#exited(e),
    "shmem-reset": () => this.#shmemReset(),
    timer: (e) => this.#timer(e.key),
    phase: (e) => this.#setPhase(e.phase),
    terminate: (e) => this.#terminate(e.target),
    restart: (e) => this.#restart(e.target),
    "client-gone": (e) => this.#releaseNotifications(e.pid),
    reload: () => this.#reload(),
    shutdown: (e) => this.#shutdown(e.mode, e.startupFailure),
    "lease-granted": (e) => this.#leaseGranted(e.worker, e.generation),
    "lease-stop": (e) => this.#leaseStop(e.worker, e.signal),
  };

  constructor(options: MachineOptions) {
    this.postmasterId = options.postmasterId;
    this.maxWorkerProcesses = options.maxWorkerProcesses;
    this.#backoff = options.restartBackoff ?? DEFAULT_RESTART_BACKOFF;
    this.#databaseServed = options.databaseServed;
    this.#shutdownTimeoutMs = options.shutdownTimeoutMs;
    this.#cluster = options.cluster ?? false;
  }

  /**
   * The one way in: applies `event` and returns the actions it calls for, with its result (`EventResults`).
   * A refused event (a launch with no free slot, a registration after start...) throws, changing nothing.
   */
  handle<E extends MachineEvent>(event: E): Outcome<E["kind"]> {
    // TypeScript cannot correlate `event.kind` with the handler it indexes; the table's type checks each pair.
    const handler = this.#handlers[event.kind] as unknown as (event: E) => ResultOf<E["kind"]>;
    const result = handler(event);
    return { actions: this.#flush(), result };
  }

  // ----- registration -------------------------------------------------------------------------------

  #begin(): undefined {
    if (this.#state.stage !== "new") {
      throw makeError(Error, "ERR_BGWORKER_POSTMASTER_STATE", `Postmaster.start: this postmaster is already ${this.lifecycle}`);
    }
    this.#state = { stage: "loading" };
    return undefined;
  }

  #registerStatic(definition: WorkerDefinition): undefined {
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
    if (definition.scope === "cluster" && !this.#cluster) this.#log({ event: "cluster-scope-without-cluster", name: definition.name });
    return undefined;
  }

  #start(): undefined {
    if (this.#registering()) this.#state = { stage: "starting", recovering: false };
    for (const slot of this.#slots) {
      this.#log({ event: "worker-registering", name: slot.definition.name });
      this.#startIfAllowed(slot);
    }
    return undefined;
  }

  #ready(): undefined {
    if (this.#state.stage === "starting") this.#state = { stage: "running", recovering: this.#state.recovering };
    return undefined;
  }

  #closed(): undefined {
    this.#state = { stage: "stopped", mode: this.shuttingDown };
    return undefined;
  }

  #launch(definition: WorkerDefinition): HandleRef {
    if (this.#shutdownMode() !== null || this.#state.stage === "stopping" || this.#state.stage === "closing" || this.#state.stage === "stopped") {
      throw makeError(Error, "ERR_BGWORKER_SHUTTING_DOWN", `cannot register background worker "${definition.name}": the postmaster is shutting down`);
    }
    this.#checkDatabaseAccess(definition);
    if (definition.scope === "cluster") {
      throw makeError(
        TypeError,
        "ERR_BGWORKER_CLUSTER_SCOPE",
        `cannot register background worker "${definition.name}": scope "cluster" is for static workers (registered in _PG_init); ` +
          `a dynamic worker runs on the postmaster that launched it`,
      );
    }
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
    return this.#refOf(slot);
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
      lease: null,
      leaseStop: null,
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

  #handedOver({ slot: slotIndex, generation, pid, at }: EventOf<"handed-over">): undefined {
    const slot = this.#slotAt(slotIndex, generation);
    if (slot === undefined || slot.run.state !== "spawning") return undefined;
    const { terminated } = slot.run;
    slot.run = { state: "starting", pid, handedOverAt: at, runStartedAt: at, terminated, stopping: null, backendPid: null };
    this.#slotByPid.set(pid, slot);
    this.#log({ event: "worker-started", name: slot.definition.name, pid }, slot);
    if (this.#leased(slot)) this.#emit({ type: "lease", worker: slot.definition.name, event: { kind: "worker-started", pid } });
    // Decisions taken while the worker had no process yet apply to it now: what a shutdown sent every
    // worker, a termination, a crash-restart of shared memory.
    const sent = this.#state.stage === "stopping" ? this.#state.sent : null;
    if (sent === "SIGKILL" || slot.leaseStop === "SIGKILL") this.#emit({ type: "signal", pid, signal: "SIGKILL" });
    else if (sent === "SIGTERM" || terminated || slot.leaseStop === "SIGTERM") this.#emit({ type: "signal", pid, signal: "SIGTERM" });
    else if (this.#recovering() && slot.definition.shmem) {
      slot.run = { ...slot.run, stopping: "crash" };
      this.#emit({ type: "signal", pid, signal: "SIGKILL" });
    }
    return undefined;
  }

  #entered(pid: number, at: number): undefined {
    const slot = this.#slotByPid.get(pid);
    if (slot !== undefined && slot.run.state === "starting") slot.run = { ...slot.run, state: "running", runStartedAt: at };
    return undefined;
  }

  #session(pid: number, backendPid: number): undefined {
    const slot = this.#slotByPid.get(pid);
    if (slot !== undefined && hasProcess(slot)) slot.run = { ...slot.run, backendPid };
    return undefined;
  }

  #spawnFailed({ slot: slotIndex, generation, reason, at }: EventOf<"spawn-failed">): undefined {
    const slot = this.#slotAt(slotIndex, generation);
    if (slot === undefined || slot.run.state !== "spawning") return undefined;
    const { terminated } = slot.run;
    this.#log({ event: "fork-failed", name: slot.definition.name, reason }, slot);
    const lastExit: LastExit = { code: 1, signal: null, at: new Date(at).toISOString() };
    if (this.#leaseStopped(slot)) this.#waitForLease(slot, lastExit);
    else this.#afterExit(slot, lastExit, 0, terminated);
    this.#leaseExit(slot, 0);
    this.#afterAnyExit();
    return undefined;
  }

  #exited({ pid, code, signal, at }: EventOf<"exited">): undefined {
    this.#releaseNotifications(pid);
    const slot = this.#slotByPid.get(pid);
    if (slot === undefined || !("pid" in slot.run)) return undefined;
    this.#slotByPid.delete(pid);
    slot.lastPid = pid;
    const { terminated, stopping, runStartedAt } = slot.run;
    const lastExit: LastExit = { code, signal, at: new Date(at).toISOString() };
    const crashed = classifyExit(code, signal) === "crashed" && slot.definition.shmem;
    const shuttingDown = this.#shutdownMode() !== null;
    this.#log({ event: "worker-exited", type: slot.definition.type, pid, code, signal }, slot);
    if (this.#leaseStopped(slot) && !terminated && !shuttingDown && stopping !== "crash") {
      // Stopped because the lease went: no failure, no restart timer; it runs again when a lease is granted.
      this.#waitForLease(slot, lastExit);
    } else if (stopping === "restart" && !crashed && !shuttingDown) {
      // An administrator's restart: a new process now; its stop was asked for, so it is no failure.
      slot.lastExit = lastExit;
      slot.fastFailures = 0;
      slot.run = { state: "waiting" };
      this.#startIfAllowed(slot);
    } else if (stopping === "crash") {
      slot.lastExit = lastExit;
      // Killed as part of a crash-restart: restartable workers come back when the segment is re-created.
      if (slot.definition.restartTimeMs === null || terminated || shuttingDown) this.#unregister(slot, terminated);
      else slot.run = { state: "waiting" };
    } else if (crashed && !shuttingDown) {
      this.#crash(slot, lastExit, at - runStartedAt, terminated);
    } else {
      this.#afterExit(slot, lastExit, at - runStartedAt, terminated);
    }
    this.#leaseExit(slot, pid);
    this.#afterAnyExit();
    return undefined;
  }

  /** Exit 0, exit 1, or a crash that does not involve shared memory (handled like exit 1). */
  #afterExit(slot: Slot, lastExit: LastExit, runMs: number, terminated: boolean): void {
    slot.lastExit = lastExit;
    const kind = classifyExit(lastExit.code, lastExit.signal);
    if (kind === "done" || terminated || slot.definition.restartTimeMs === null || this.#shutdownMode() !== null) {
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
      this.#log(
        { event: "restart-damped", type: slot.definition.type, failures: slot.fastFailures, withinMs: this.#backoff.fastFailureMs, delayMs: delay },
        slot,
      );
    }
    if (delay === 0) {
      // Restart time 0 is "at once", as PostgreSQL's postmaster starts such a worker in the same pass of its
      // loop that reaped it: no timer, whose turn of the event loop would add a millisecond to every restart.
      slot.run = { state: "waiting" };
      this.#startIfAllowed(slot);
      return;
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
    this.#log({ event: "crash-stopping-others" });
    this.#setRecovering(true);
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
  #shmemReset(): undefined {
    if (!this.#recovering()) return undefined;
    this.#setRecovering(false);
    for (const slot of this.#slots) {
      if (!slot.definition.shmem || slot.run.state !== "waiting") continue;
      const extra = dampingDelay(slot.fastFailures, this.#backoff);
      if (extra > 0) this.#backoffFor(slot, extra);
      else this.#startIfAllowed(slot);
    }
    return undefined;
  }

  #afterAnyExit(): void {
    if (this.#recovering() && !this.#slots.some((s) => s.definition.shmem && occupied(s))) {
      this.#log({ event: "shmem-reinitializing" });
      this.#emit({ type: "resetShmem" });
    }
    this.#advanceShutdown();
  }

  #timer(key: TimerKey): undefined {
    if (key.kind === "shutdown-kill") {
      for (const slot of this.#slots) if (hasProcess(slot)) this.#emit({ type: "signal", pid: slot.run.pid, signal: "SIGKILL" });
      return undefined;
    }
    const slot = this.#slotAt(key.slot, key.generation);
    if (slot !== undefined && slot.run.state === "backoff") {
      slot.run = { state: "waiting" };
      this.#startIfAllowed(slot);
    }
    return undefined;
  }

  // ----- database -----------------------------------------------------------------------------------

  #setPhase(phase: Phase): undefined {
    if (phase === this.#phase) return undefined;
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
    return undefined;
  }

  // ----- cluster leases (SPEC §10) -------------------------------------------------------------------

  /** A cluster-scoped static worker whose starts a lease decides: only in a cluster. */
  #leased(slot: Slot): boolean {
    return this.#cluster && slot.definition.scope === "cluster";
  }

  /** Its lease is gone (or going): whatever it runs now must not be restarted under it. */
  #leaseStopped(slot: Slot): boolean {
    return this.#leased(slot) && slot.lease === null;
  }

  #leaseSlot(worker: string): Slot | undefined {
    return this.#slots.find((slot) => slot.kind === "static" && slot.definition.name === worker && this.#leased(slot));
  }

  #leaseGranted(worker: string, generation: bigint): undefined {
    const slot = this.#leaseSlot(worker);
    if (slot === undefined) return undefined;
    if (!registered(slot)) {
      // Done for good here (or the postmaster is stopping): the lease goes back at once.
      this.#emit({ type: "lease", worker, event: { kind: "worker-exited", pid: 0, final: true } });
      return undefined;
    }
    slot.lease = generation;
    slot.leaseStop = null;
    this.#startIfAllowed(slot);
    return undefined;
  }

  #leaseStop(worker: string, signal: "SIGTERM" | "SIGKILL"): undefined {
    const slot = this.#leaseSlot(worker);
    if (slot === undefined) return undefined;
    slot.lease = null;
    if (slot.leaseStop !== "SIGKILL") slot.leaseStop = signal;
    if (hasProcess(slot)) {
      this.#emit({ type: "signal", pid: slot.run.pid, signal });
    } else if (slot.run.state === "spawning") {
      // Signalled once a runner is handed it (#handedOver), or given up if none is.
    } else {
      // No process: it does not start (a pending restart is dropped), and the lease is told so at once.
      if (slot.run.state === "backoff") this.#emit({ type: "clearTimer", key: restartTimer(slot) });
      if (slot.run.state === "backoff" || slot.run.state === "waiting") slot.run = { state: "waiting" };
      this.#emit({ type: "lease", worker, event: { kind: "worker-exited", pid: 0, final: !registered(slot) } });
    }
    return undefined;
  }

  /** After a lease-stopped worker's exit: registered still, waiting for the next lease. */
  #waitForLease(slot: Slot, lastExit: LastExit): void {
    slot.lastExit = lastExit;
    slot.run = { state: "waiting" };
  }

  /** Tells the lease that its worker's process is gone, and whether the postmaster will start it again. */
  #leaseExit(slot: Slot, pid: number): void {
    if (!this.#leased(slot)) return;
    if (slot.lease === null) slot.leaseStop = null;
    this.#emit({ type: "lease", worker: slot.definition.name, event: { kind: "worker-exited", pid, final: !registered(slot) } });
  }

  // ----- requests -----------------------------------------------------------------------------------

  /** SIGTERM if it has a process, unregistered at once if not started; never restarted. */
  #terminate(target: TerminateTarget): boolean {
    const slot = "pid" in target ? this.#slotByPid.get(target.pid) : this.#liveSlot(target.handle);
    if (slot === undefined) return false;
    if (occupied(slot)) {
      slot.run = { ...slot.run, terminated: true };
      if (hasProcess(slot)) {
        // A restart asked for earlier is dropped: a terminated worker never starts again.
        if (slot.run.stopping === "restart") slot.run = { ...slot.run, stopping: null };
        this.#emit({ type: "signal", pid: slot.run.pid, signal: "SIGTERM" });
      }
    } else if (registered(slot)) {
      this.#unregister(slot, true);
      this.#leaseExit(slot, 0);
    }
    return true;
  }

  /**
   * `bgworker restart`: a new process for each worker matched, now, whatever its restart time, counted in its
   * restarts. A running worker gets SIGTERM and starts again as soon as it exits; one in backoff starts at
   * once; one starting already is left to start; one waiting for its start time keeps waiting. Answers how
   * many registered workers matched; a terminated one is not restarted.
   */
  #restart(target: RestartTarget): number {
    const mode = this.#shutdownMode();
    if (mode !== null || this.#registering()) {
      throw makeError(Error, "ERR_BGWORKER_POSTMASTER_STATE", `cannot restart background workers: the postmaster is ${mode !== null ? "shutting down" : "starting"}`);
    }
    const slots = this.#restartTargets(target);
    for (const slot of slots) this.#restartSlot(slot);
    return slots.length;
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
      this.#log({ event: "worker-restart-requested", type: slot.definition.type, pid: slot.run.pid }, slot);
      this.#emit({ type: "signal", pid: slot.run.pid, signal: "SIGTERM" });
    } else if (slot.run.state === "backoff") {
      this.#emit({ type: "clearTimer", key: restartTimer(slot) });
      this.#log({ event: "worker-restart-requested", type: slot.definition.type, pid: null }, slot);
      slot.fastFailures = 0;
      slot.run = { state: "waiting" };
      this.#startIfAllowed(slot);
    }
  }

  /** A process that may be a notify pid is gone (a worker, or a client's last connection). */
  #releaseNotifications(pid: number): undefined {
    for (const slot of this.#slots) if (slot.notifyPid === pid) slot.notifyPid = 0;
    return undefined;
  }

  /**
   * SIGHUP or `bgworker reload`, as PostgreSQL's postmaster: its log line, then SIGHUP to every running worker
   * (which sets its flag and latch where attached, and is ignored otherwise). Nothing stops or restarts. A
   * worker still starting is left out: a process still booting Node has no handler yet and SIGHUP would kill
   * it (PostgreSQL blocks signals there), and it reads its settings as it starts anyway.
   */
  #reload(): undefined {
    if (this.#state.stage === "new" || this.#state.stage === "stopped") return undefined;
    this.#log({ event: "reload-requested" });
    for (const slot of this.#slots) {
      if (slot.run.state === "running") this.#emit({ type: "signal", pid: slot.run.pid, signal: "SIGHUP" });
    }
    return undefined;
  }

  /**
   * As PostgreSQL's pmdie(): a stronger mode upgrades the shutdown in progress (smart to fast or immediate,
   * fast to immediate) and is logged; a milder or equal one changes nothing. An upgrade to fast after a smart
   * shutdown has already sent SIGTERM to every worker only changes the mode: the kill timer keeps running.
   */
  #shutdown(mode: ShutdownMode, startupFailure: string | undefined): undefined {
    const state = this.#state;
    if (state.stage === "stopped") return undefined;
    const current = this.#shutdownMode();
    if (current !== null && SHUTDOWN_ORDER[mode] <= SHUTDOWN_ORDER[current]) return undefined;
    this.#log(startupFailure === undefined ? { event: "shutdown-requested", mode } : { event: "startup-failed", reason: startupFailure });
    if (state.stage === "closing") {
      // Every worker is gone already: only the mode in force changes.
      this.#state = { stage: "closing", mode };
      return undefined;
    }
    const sent = state.stage === "stopping" ? state.sent : null;
    this.#state = { stage: "stopping", mode, sent, recovering: this.#recovering() };
    // Nothing new starts from now on: forget what has not started, so its waiters are told.
    for (const slot of this.#slots) {
      if (!registered(slot) || occupied(slot)) continue;
      this.#unregister(slot, false);
      this.#leaseExit(slot, 0);
    }
    if (mode === "immediate") this.#stopAll("SIGKILL");
    else if (mode === "fast" && sent === null) this.#stopAll("SIGTERM");
    this.#advanceShutdown();
    return undefined;
  }

  #stopAll(signal: "SIGTERM" | "SIGKILL"): void {
    if (this.#state.stage === "stopping") this.#state = { ...this.#state, sent: signal };
    for (const slot of this.#slots) if (hasProcess(slot)) this.#emit({ type: "signal", pid: slot.run.pid, signal });
    if (signal === "SIGTERM") this.#emit({ type: "setTimer", key: SHUTDOWN_KILL, delayMs: this.#shutdownTimeoutMs });
  }

  #advanceShutdown(): void {
    const state = this.#state;
    if (state.stage !== "stopping") return;
    // Smart: dynamic workers may finish their work; once they have, the rest stop as in a fast shutdown,
    // and the shutdown is still the smart one that was asked for.
    if (state.mode === "smart" && state.sent === null && !this.#slots.some((s) => s.kind === "dynamic" && occupied(s))) {
      this.#log({ event: "smart-shutdown-stopping-others" });
      this.#stopAll("SIGTERM");
    }
    if (this.#slots.some(occupied)) return;
    this.#state = { stage: "closing", mode: state.mode };
    this.#emit({ type: "clearTimer", key: SHUTDOWN_KILL });
    this.#emit({ type: "shutdownComplete", mode: state.mode });
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

  get state(): PostmasterState {
    return this.#state;
  }

  get lifecycle(): Lifecycle {
    return LIFECYCLE[this.#state.stage];
  }

  get currentPhase(): Phase {
    return this.#phase;
  }

  /** The shutdown mode asked for (upgraded by a stronger request), from the request on; null before any. */
  get shuttingDown(): ShutdownMode | null {
    return this.#shutdownMode();
  }

  /** Whether the slot's `spawn` still waits for a runner (`handed-over` or `spawn-failed`). */
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

  /** When the runner with this pid was handed its worker (ms since the epoch), while it is that worker. */
  handedOverAt(pid: number): number | undefined {
    const slot = this.#slotByPid.get(pid);
    return slot !== undefined && hasProcess(slot) ? slot.run.handedOverAt : undefined;
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
      scope: slot.definition.scope,
      ...(this.#leased(slot) ? { fencingToken: slot.lease === null ? null : slot.lease.toString() } : {}),
    }));
  }

  // ----- helpers ------------------------------------------------------------------------------------

  /** Before `start`: static registration is open and no worker starts yet. */
  #registering(): boolean {
    return this.#state.stage === "new" || this.#state.stage === "loading";
  }

  #shutdownMode(): ShutdownMode | null {
    return "mode" in this.#state ? this.#state.mode : null;
  }

  /** Between a shared-memory worker's crash and the re-creation of the segment. */
  #recovering(): boolean {
    return "recovering" in this.#state && this.#state.recovering;
  }

  #setRecovering(recovering: boolean): void {
    const state = this.#state;
    if (state.stage === "starting" || state.stage === "running" || state.stage === "stopping") this.#state = { ...state, recovering };
  }

  #startIfAllowed(slot: Slot): void {
    if (this.#registering() || slot.run.state !== "waiting" || this.#shutdownMode() !== null) return;
    if (!mayStart(slot.definition.startTime, this.#phase) || (this.#recovering() && slot.definition.shmem)) return;
    if (this.#leased(slot) && slot.lease === null) return;
    const restart = slot.lastExit !== null;
    if (restart) slot.restarts += 1;
    slot.run = { state: "spawning", terminated: false };
    const fencingToken = this.#leased(slot) ? slot.lease : null;
    const staticStart = slot.kind === "static" && !restart;
    this.#emit({ type: "spawn", slot: slot.index, generation: slot.generation, definition: slot.definition, restart, staticStart, fencingToken });
  }

  #unregister(slot: Slot, terminated: boolean): void {
    if (slot.run.state === "backoff") this.#emit({ type: "clearTimer", key: restartTimer(slot) });
    slot.run = { state: "stopped" };
    if (slot.kind === "dynamic" || terminated) this.#log({ event: "worker-unregistering", name: slot.definition.name }, slot);
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

  /** A log line, named after the slot's worker when it is about one. */
  #log(event: LogEvent, slot?: Slot): void {
    this.#emit(slot === undefined ? { type: "log", event } : { type: "log", event, worker: workerOf(slot) });
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
