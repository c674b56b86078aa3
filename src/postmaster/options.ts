/** `Postmaster` options: their public shape, defaults, and the validation that runs before anything starts. */
import { resolve } from "node:path";
import type { DatabaseOption } from "../database/types.js";
import { show } from "../errors.js";
import { LOG_FORMATS, type LogFormat, type LogSink } from "../log.js";
import { DEFAULT_RESTART_BACKOFF, type RestartBackoff } from "./rules.js";

export interface PostmasterOptions {
  /** Extension modules (`.ts` or `.js`) whose `_PG_init()` registers static workers, resolved from `cwd`. */
  readonly extensions: readonly string[];
  /**
   * The database served: `"embedded"` (default: a cluster managed in `./.bgworker/pgdata`), `{ pgdata }`
   * (a cluster managed in that directory), `{ url }` (any server, never started or stopped), or `false`.
   */
  readonly database?: DatabaseOption | false;
  /** Worker slots shared by static and dynamic workers, PostgreSQL's `max_worker_processes`. Default 8. */
  readonly maxWorkerProcesses?: number;
  /** The control socket's path (default `./.bgworker/bgworker.sock`); `false` opens none. */
  readonly socketPath?: string | false;
  /** Fast shutdown: how long workers have after SIGTERM before SIGKILL. Default 10 000 ms. */
  readonly shutdownTimeoutMs?: number;
  readonly logFormat?: LogFormat;
  /** Where log lines go; default the postmaster's stderr. */
  readonly logSink?: LogSink;
  /** Restart-storm damping (SPEC §6); any field left out keeps its default. */
  readonly restartBackoff?: Partial<RestartBackoff>;
  /** Warm spare runners kept booted for fast launches. Default 1. */
  readonly spareRunners?: number;
  /** The working directory extensions and libraries resolve from. Default `process.cwd()`. */
  readonly cwd?: string;
}

export interface ResolvedOptions {
  readonly extensions: readonly string[];
  readonly database: DatabaseOption | false;
  readonly maxWorkerProcesses: number;
  readonly socketPath: string | false;
  readonly shutdownTimeoutMs: number;
  readonly logFormat: LogFormat;
  readonly logSink: LogSink | undefined;
  readonly restartBackoff: RestartBackoff;
  readonly spareRunners: number;
  readonly cwd: string;
}

/** The largest `max_worker_processes` PostgreSQL accepts (MAX_BACKENDS is far larger; this keeps it sane). */
const MAX_WORKER_PROCESSES = 262_143;

function integer(field: string, value: unknown, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new TypeError(`Postmaster: ${field} ${show(value)} must be an integer from ${min} to ${max}`);
  }
  return value;
}

function databaseOption(value: unknown): DatabaseOption | false {
  if (value === undefined || value === "embedded") return "embedded";
  if (value === false) return false;
  if (typeof value === "object" && value !== null) {
    const keys = Object.keys(value);
    const record = value as Record<string, unknown>;
    if (keys.length === 1 && typeof record.url === "string" && record.url.length > 0) return { url: record.url };
    if (keys.length === 1 && typeof record.pgdata === "string" && record.pgdata.length > 0) return { pgdata: record.pgdata };
  }
  throw new TypeError(`Postmaster: database ${show(value)} must be "embedded", { url: string }, { pgdata: string } or false`);
}

export function resolveOptions(options: PostmasterOptions): ResolvedOptions {
  if (typeof options !== "object" || options === null) throw new TypeError(`Postmaster: options ${show(options)} must be an object`);
  const cwd = options.cwd ?? process.cwd();
  if (typeof cwd !== "string" || cwd.length === 0) throw new TypeError(`Postmaster: cwd ${show(cwd)} must be a directory path`);
  if (!Array.isArray(options.extensions)) {
    throw new TypeError(`Postmaster: extensions ${show(options.extensions)} must be an array of module paths`);
  }
  for (const [index, extension] of options.extensions.entries()) {
    if (typeof extension !== "string" || extension.length === 0) {
      throw new TypeError(`Postmaster: extensions[${index}] ${show(extension)} must be a non-empty module path`);
    }
  }
  const socketPath = options.socketPath ?? resolve(cwd, ".bgworker", "bgworker.sock");
  if (socketPath !== false && (typeof socketPath !== "string" || socketPath.length === 0)) {
    throw new TypeError(`Postmaster: socketPath ${show(socketPath)} must be a path or false`);
  }
  const logFormat = options.logFormat ?? "text";
  if (!LOG_FORMATS.includes(logFormat)) {
    throw new TypeError(`Postmaster: logFormat ${show(logFormat)} must be one of ${LOG_FORMATS.join(", ")}`);
  }
  if (options.logSink !== undefined && typeof options.logSink !== "function") {
    throw new TypeError(`Postmaster: logSink ${show(options.logSink)} must be a function`);
  }
  const backoff = { ...DEFAULT_RESTART_BACKOFF, ...(options.restartBackoff ?? {}) };
  for (const [field, value] of Object.entries(backoff)) integer(`restartBackoff.${field}`, value, 0, 86_400_000);
  return {
    extensions: options.extensions,
    database: databaseOption(options.database),
    maxWorkerProcesses: integer("maxWorkerProcesses", options.maxWorkerProcesses ?? 8, 1, MAX_WORKER_PROCESSES),
    socketPath: socketPath === false ? false : resolve(cwd, socketPath),
    shutdownTimeoutMs: integer("shutdownTimeoutMs", options.shutdownTimeoutMs ?? 10_000, 0, 86_400_000),
    logFormat,
    logSink: options.logSink,
    restartBackoff: backoff,
    spareRunners: integer("spareRunners", options.spareRunners ?? 1, 0, 64),
    cwd,
  };
}
