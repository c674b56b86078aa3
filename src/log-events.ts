/**
 * The postmaster's log events as data: each kind with its fields, its level, and the one text it renders to
 * (PostgreSQL's wording, which users and tests read). A text log is a rendering of these; a JSON log carries
 * the kind and fields beside the text. The log reader recognises the kinds that tie a worker to a pid from
 * the same table, so the text it reads back is the text written here.
 */
import type { LogLevel } from "./log.js";
import type { Phase, ShutdownMode } from "./status.js";

export type LogEvent =
  // ----- the state machine (postmaster/machine.ts) -----
  | { readonly event: "worker-registering"; readonly name: string }
  /** A runner was handed the worker: it is this worker's process from now on. */
  | { readonly event: "worker-started"; readonly name: string; readonly pid: number }
  | { readonly event: "fork-failed"; readonly name: string; readonly reason: string }
  | { readonly event: "worker-exited"; readonly type: string; readonly pid: number; readonly code: number | null; readonly signal: string | null }
  | { readonly event: "restart-damped"; readonly type: string; readonly failures: number; readonly withinMs: number; readonly delayMs: number }
  /** A shared-memory worker crashed: the others that use shared memory are killed. */
  | { readonly event: "crash-stopping-others" }
  | { readonly event: "shmem-reinitializing" }
  /** `bgworker restart`: a running worker (its pid) gets SIGTERM, or one in backoff (no pid) starts now. */
  | { readonly event: "worker-restart-requested"; readonly type: string; readonly pid: number | null }
  | { readonly event: "reload-requested" }
  | { readonly event: "shutdown-requested"; readonly mode: ShutdownMode }
  /** Nobody asked for a shutdown: the start-up failed, and this is why the postmaster goes away. */
  | { readonly event: "startup-failed"; readonly reason: string }
  /** The second step of a smart shutdown. */
  | { readonly event: "smart-shutdown-stopping-others" }
  | { readonly event: "worker-unregistering"; readonly name: string }
  /** A cluster-scoped worker registered on a postmaster that is not in a cluster: it runs here as host-scoped. */
  | { readonly event: "cluster-scope-without-cluster"; readonly name: string }
  // ----- the shell (postmaster/shell.ts) -----
  | { readonly event: "worker-registered"; readonly name: string; readonly extension: string }
  | { readonly event: "stale-segment-removed"; readonly segment: string }
  | { readonly event: "database-served"; readonly description: string }
  | { readonly event: "postmaster-ready"; readonly extensions: number; readonly staticWorkers: number }
  | { readonly event: "phase-changed"; readonly phase: Phase; readonly reason: string }
  | { readonly event: "database-unreachable"; readonly reason: string }
  | { readonly event: "server-reloaded" }
  | { readonly event: "server-reload-failed"; readonly error: string }
  | { readonly event: "malformed-request"; readonly pid: number; readonly reason: string }
  /** The postmaster cannot go on (shared memory could not be re-created) and shuts down. */
  | { readonly event: "postmaster-failed"; readonly error: string }
  | { readonly event: "shutdown-problem"; readonly error: string }
  | { readonly event: "postmaster-shut-down" }
  // ----- cluster mode (cluster/shell.ts, from the lease machines) -----
  | { readonly event: "cluster-joined"; readonly cluster: string; readonly nodeId: string; readonly backendPid: number }
  | { readonly event: "cluster-session-lost"; readonly cluster: string; readonly reason: string }
  | { readonly event: "cluster-session-failed"; readonly cluster: string; readonly reason: string }
  /** Generations are decimal strings: JSON carries them without loss. */
  | { readonly event: "lease-acquired"; readonly worker: string; readonly generation: string }
  | { readonly event: "leadership-lost"; readonly worker: string; readonly generation: string; readonly reason: string }
  | { readonly event: "lease-renewal-failed"; readonly worker: string; readonly generation: string; readonly reason: string }
  | { readonly event: "lease-released"; readonly worker: string; readonly generation: string }
  | { readonly event: "lease-release-failed"; readonly worker: string; readonly generation: string; readonly reason: string }
  // ----- said by a worker's runtime about itself -----
  | { readonly event: "worker-terminating"; readonly type: string };

export type LogEventKind = LogEvent["event"];
type EventOf<K extends LogEventKind> = Extract<LogEvent, { readonly event: K }>;

interface Entry<K extends LogEventKind> {
  readonly level: LogLevel;
  readonly text: (event: EventOf<K>) => string;
  /** For the kinds the log reader needs back from a text line: the event the message renders, or undefined. */
  readonly read?: (message: string) => EventOf<K> | undefined;
}

/** Every kind's entry; the mapped type makes a new kind without an entry a compile error. */
const CATALOGUE: { readonly [K in LogEventKind]: Entry<K> } = {
  "worker-registering": { level: "DEBUG", text: (e) => `registering background worker "${e.name}"` },
  "worker-started": {
    level: "DEBUG",
    text: (e) => `started background worker "${e.name}" (PID ${e.pid})`,
    read: (message) => {
      const match = /^started background worker "(.*)" \(PID (\d+)\)$/.exec(message);
      return match === null ? undefined : { event: "worker-started", name: match[1]!, pid: Number(match[2]) };
    },
  },
  "fork-failed": { level: "LOG", text: (e) => `could not fork background worker process "${e.name}": ${e.reason}` },
  "worker-exited": {
    level: "LOG",
    text: (e) => `background worker "${e.type}" (PID ${e.pid}) ${describeExit(e.code, e.signal)}`,
    read: (message) => {
      const match = /^background worker "(.*)" \(PID (\d+)\) (?:exited with exit code (\d+|unknown)|was terminated by signal ([^:]+): .*)$/.exec(message);
      if (match === null) return undefined;
      const [, type, pid, code, signal] = match;
      return signal !== undefined
        ? { event: "worker-exited", type: type!, pid: Number(pid), code: null, signal: signalName(signal) }
        : { event: "worker-exited", type: type!, pid: Number(pid), code: code === "unknown" ? null : Number(code), signal: null };
    },
  },
  "restart-damped": {
    level: "LOG",
    text: (e) =>
      `background worker "${e.type}" failed ${e.failures} times in a row within ${e.withinMs} ms of starting; ` +
      `delaying its restart by ${e.delayMs} ms`,
  },
  "crash-stopping-others": { level: "LOG", text: () => "terminating any other active server processes that use shared memory" },
  "shmem-reinitializing": { level: "LOG", text: () => "all shared-memory workers terminated; reinitializing shared memory" },
  "worker-restart-requested": {
    level: "LOG",
    text: (e) => `restarting background worker "${e.type}" ${e.pid === null ? "now" : `(PID ${e.pid})`} at administrator request`,
    read: (message) => {
      const match = /^restarting background worker "(.*)" (?:now|\(PID (\d+)\)) at administrator request$/.exec(message);
      return match === null ? undefined : { event: "worker-restart-requested", type: match[1]!, pid: match[2] === undefined ? null : Number(match[2]) };
    },
  },
  "reload-requested": { level: "LOG", text: () => "received SIGHUP, reloading configuration files" },
  "shutdown-requested": { level: "LOG", text: (e) => `received ${e.mode} shutdown request` },
  "startup-failed": { level: "FATAL", text: (e) => `postmaster start-up failed: ${e.reason}` },
  "smart-shutdown-stopping-others": { level: "LOG", text: () => "no dynamic background workers left; stopping the others" },
  "worker-unregistering": { level: "DEBUG", text: (e) => `unregistering background worker "${e.name}"` },
  "cluster-scope-without-cluster": {
    level: "WARNING",
    text: (e) => `background worker "${e.name}" has scope "cluster", but this postmaster is not in a cluster (--cluster): it runs here as a host-scoped worker`,
  },
  "cluster-joined": { level: "LOG", text: (e) => `joined cluster "${e.cluster}" as node "${e.nodeId}" (cluster session PID ${e.backendPid})` },
  "cluster-session-lost": { level: "WARNING", text: (e) => `cluster "${e.cluster}": the cluster session was lost: ${e.reason}` },
  "cluster-session-failed": { level: "WARNING", text: (e) => `cluster "${e.cluster}": cannot open the cluster session: ${e.reason}` },
  "lease-acquired": { level: "LOG", text: (e) => `acquired the cluster lease of background worker "${e.worker}" (generation ${e.generation})` },
  "leadership-lost": { level: "LOG", text: (e) => `leadership lost: background worker "${e.worker}" (generation ${e.generation}) is being stopped: ${e.reason}` },
  "lease-renewal-failed": { level: "WARNING", text: (e) => `could not renew the cluster lease of background worker "${e.worker}" (generation ${e.generation}): ${e.reason}` },
  "lease-released": { level: "LOG", text: (e) => `released the cluster lease of background worker "${e.worker}" (generation ${e.generation})` },
  "lease-release-failed": {
    level: "WARNING",
    text: (e) => `could not release the cluster lease of background worker "${e.worker}" (generation ${e.generation}); it expires by itself: ${e.reason}`,
  },
  "worker-registered": { level: "DEBUG", text: (e) => `registered background worker "${e.name}" from extension "${e.extension}"` },
  "stale-segment-removed": { level: "LOG", text: (e) => `removed shared memory segment "${e.segment}" left by a postmaster that is gone` },
  "database-served": { level: "LOG", text: (e) => `serving ${e.description}` },
  "postmaster-ready": { level: "LOG", text: (e) => `postmaster ready: ${e.extensions} extension(s), ${e.staticWorkers} static worker(s)` },
  "phase-changed": { level: "LOG", text: (e) => `database phase is now ${e.phase}: ${e.reason}` },
  "database-unreachable": { level: "LOG", text: (e) => `database cannot be reached: ${e.reason}` },
  "server-reloaded": { level: "LOG", text: () => "signaled the PostgreSQL server to reload its configuration files" },
  "server-reload-failed": { level: "WARNING", text: (e) => `could not reload the PostgreSQL server: ${e.error}` },
  "malformed-request": { level: "WARNING", text: (e) => `malformed request from background worker (PID ${e.pid}): ${e.reason}` },
  "postmaster-failed": { level: "FATAL", text: (e) => `${e.error}; shutting down` },
  "shutdown-problem": { level: "WARNING", text: (e) => `during shutdown: ${e.error}` },
  "postmaster-shut-down": { level: "LOG", text: () => "postmaster shut down" },
  "worker-terminating": {
    level: "FATAL",
    text: (e) => `terminating background worker "${e.type}" due to administrator command`,
    read: (message) => {
      const match = /^terminating background worker "(.*)" due to administrator command$/.exec(message);
      return match === null ? undefined : { event: "worker-terminating", type: match[1]! };
    },
  },
};

function entryOf<K extends LogEventKind>(kind: K): Entry<K> {
  return CATALOGUE[kind];
}

/** The event's line as PostgreSQL would word it (without the prefix). */
export function renderEvent(event: LogEvent): string {
  return (entryOf(event.event).text as (e: LogEvent) => string)(event);
}

export function levelOf(event: LogEvent): LogLevel {
  return CATALOGUE[event.event].level;
}

export function isLogEventKind(kind: unknown): kind is LogEventKind {
  return typeof kind === "string" && Object.hasOwn(CATALOGUE, kind);
}

/** The kinds a text line can be read back as: those that tie a worker's name or type to a pid. */
export const READABLE_KINDS: readonly LogEventKind[] = (Object.keys(CATALOGUE) as LogEventKind[]).filter((kind) => CATALOGUE[kind].read !== undefined);

/** The event a message of a text line renders, among `READABLE_KINDS`; undefined for any other message. */
export function readEvent(message: string): LogEvent | undefined {
  for (const kind of READABLE_KINDS) {
    const event = (CATALOGUE[kind].read as (m: string) => LogEvent | undefined)(message);
    if (event !== undefined) return event;
  }
  return undefined;
}

/** PostgreSQL's wording of an exit: `exited with exit code N`, or `was terminated by signal N: Description`. */
export function describeExit(code: number | null, signal: string | null): string {
  if (signal !== null) return `was terminated by signal ${signalNumber(signal)}: ${signalDescription(signal)}`;
  return `exited with exit code ${code ?? "unknown"}`;
}

const SIGNALS: Readonly<Record<string, readonly [number, string]>> = {
  SIGHUP: [1, "Hangup"],
  SIGINT: [2, "Interrupt"],
  SIGQUIT: [3, "Quit"],
  SIGILL: [4, "Illegal instruction"],
  SIGABRT: [6, "Aborted"],
  SIGBUS: [7, "Bus error"],
  SIGFPE: [8, "Floating point exception"],
  SIGKILL: [9, "Killed"],
  SIGUSR1: [10, "User defined signal 1"],
  SIGSEGV: [11, "Segmentation fault"],
  SIGUSR2: [12, "User defined signal 2"],
  SIGPIPE: [13, "Broken pipe"],
  SIGALRM: [14, "Alarm clock"],
  SIGTERM: [15, "Terminated"],
};

function signalNumber(signal: string): string {
  return String(SIGNALS[signal]?.[0] ?? signal);
}

function signalDescription(signal: string): string {
  return SIGNALS[signal]?.[1] ?? signal;
}

/** The signal a rendered number stands for (a signal not in the table was rendered by its name). */
function signalName(rendered: string): string {
  return Object.entries(SIGNALS).find(([, [number]]) => String(number) === rendered)?.[0] ?? rendered;
}
