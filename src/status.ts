/** The rows of `bgworker status` and `Postmaster#status()` (SPEC §7). JSON-safe: they cross the control socket. */
import type { WorkerScope } from "./definition.js";

/** `waiting` for the database phase, `starting` (process up, function not yet entered), `running`, `backoff`
 * (a restart is scheduled), `stopped` (gone; the slot shows its last run until it is reused). */
export type WorkerState = "waiting" | "starting" | "running" | "backoff" | "stopped";

/** The served database's state, as far as the start times care. */
export type Phase = "starting" | "consistent" | "running";

export type ShutdownMode = "smart" | "fast" | "immediate";
export const SHUTDOWN_MODES: readonly ShutdownMode[] = ["smart", "fast", "immediate"];

export interface LastExit {
  /** Exit code, or null when the process died by a signal. */
  readonly code: number | null;
  readonly signal: string | null;
  /** ISO time of the exit. */
  readonly at: string;
}

export interface WorkerStatusRow {
  readonly slot: number;
  readonly name: string;
  readonly type: string;
  readonly pid: number | null;
  readonly state: WorkerState;
  readonly startTime: "PostmasterStart" | "ConsistentState" | "RecoveryFinished";
  /** Milliseconds, or null: never restarted. */
  readonly restartTimeMs: number | null;
  readonly restarts: number;
  readonly lastExit: LastExit | null;
  readonly notifyPid: number;
  readonly kind: "static" | "dynamic";
  readonly spi: boolean;
  readonly shmem: boolean;
  /** With state `backoff`: how long the pending restart waits, in milliseconds. */
  readonly backoffMs: number | null;
  /** The server process id (`pg_stat_activity.pid`) of the worker's database session, once it has one. */
  readonly backendPid?: number | null;
  /** Dynamic workers: the serialisable handle. */
  readonly handle: string | null;
  /** `cluster`: runs once across a cluster of postmasters, here only while this node holds its lease (SPEC §10). */
  readonly scope?: WorkerScope;
  /**
   * A cluster-scoped worker in a cluster: the generation of the lease this node holds for it, as a decimal
   * string (its `getFencingToken()`); null while another node holds it, or none does.
   */
  readonly fencingToken?: string | null;
  /** CPU seconds (user + system) of the running process, read from the OS; null when not running or unknown. */
  readonly cpuSeconds?: number | null;
  /** Resident memory of the running process in bytes, read from the OS; null when not running or unknown. */
  readonly rssBytes?: number | null;
  /** How long its current process has been this worker, in milliseconds; null when not running. */
  readonly uptimeMs?: number | null;
}

export interface PostmasterStatusRow {
  readonly pid: number;
  readonly phase: Phase;
  /** While the phase is `starting`: why the database cannot be reached (PostgreSQL's message); else null. */
  readonly phaseReason?: string | null;
  /** What database is served and how, without any password. */
  readonly database: string;
  readonly uptimeMs: number;
  readonly shmemBytes: number;
  readonly maxWorkerProcesses: number;
  /** The warm spare runners: booted runners that become workers at a launch or restart. */
  readonly spares: {
    /** Spare runners now, booting ones included. */
    readonly count: number;
    /** Of those, booted and ready to become a worker at once. */
    readonly ready: number;
    /** How many the pool aims at now: it grows with launches that found none, and shrinks back when quiet. */
    readonly target: number;
    /** The most it grows to (`maxSpareRunners`). */
    readonly max: number;
    /** Their memory, the sum of their proportional set sizes (PSS), in bytes; null where `/proc` is absent. */
    readonly pssBytes: number | null;
  };
  /**
   * Set from a shutdown request on: the mode asked for, or the stronger one a later request upgraded it to
   * (smart to fast or immediate, fast to immediate; a milder request never downgrades it). A smart shutdown
   * stays `smart` after its dynamic workers have finished and the others are being stopped.
   */
  readonly shutdown: ShutdownMode | null;
  /** In cluster mode (SPEC §10): the cluster's name and this node's id; null otherwise. */
  readonly cluster?: { readonly name: string; readonly nodeId: string } | null;
}

export interface StatusReport {
  readonly postmaster: PostmasterStatusRow;
  readonly workers: readonly WorkerStatusRow[];
}
