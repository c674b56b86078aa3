/** `Postmaster` options: their public shape, defaults, and the validation that runs before anything starts. */
import { hostname } from "node:os";
import { resolve } from "node:path";
import { resolveClusterOption, type ClusterConfig, type ClusterOption } from "../cluster/options.js";
import { defaultSocketPath } from "../control/socket-path.js";
import { validateDatabaseOption } from "../database/options.js";
import type { DatabaseOption } from "../database/types.js";
import { show } from "../errors.js";
import { integerOption, invalidOption } from "../option-check.js";
import { LOG_FORMATS, type LogFormat, type LogSink } from "../log.js";
import { DEFAULT_RESTART_BACKOFF, type RestartBackoff } from "./rules.js";
import { SPARE_CEILING } from "./spare-policy.js";

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
  /** Warm spare runners always kept booted for fast launches (the pool's floor). Default 1; 0 keeps none. */
  readonly spareRunners?: number;
  /**
   * The most spare runners the pool grows to while launches outrun it (each idle spare costs about a bare
   * `node` process's memory). Default 8, or `spareRunners` if that is larger; at least `spareRunners`.
   */
  readonly maxSpareRunners?: number;
  /** The working directory extensions and libraries resolve from. Default `process.cwd()`. */
  readonly cwd?: string;
  /**
   * Cluster mode (SPEC §10): postmasters that serve the same database (`database: { url }`) under the same
   * cluster name share it, and each `setScope("cluster")` worker runs on exactly one of them at a time.
   */
  readonly cluster?: ClusterOption;
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
  readonly maxSpareRunners: number;
  readonly cwd: string;
  readonly cluster: ClusterConfig | null;
}

/** The largest `max_worker_processes` PostgreSQL accepts (MAX_BACKENDS is far larger; this keeps it sane). */
const MAX_WORKER_PROCESSES = 262_143;

/** How many spare runners the pool may hold at most, whatever the options say. */
const MAX_SPARE_RUNNERS = 64;

/** The database option, its URL parsed now: a malformed one is refused by the constructor, not by start(). */
function databaseOption(value: unknown): DatabaseOption | false {
  if (value === undefined || value === "embedded") return "embedded";
  if (value === false) return false;
  if (typeof value === "object" && value !== null) {
    const keys = Object.keys(value);
    const record = value as Record<string, unknown>;
    const shaped = keys.length === 1 && ((typeof record.url === "string" && record.url.length > 0) || (typeof record.pgdata === "string" && record.pgdata.length > 0));
    if (shaped) {
      try {
        return validateDatabaseOption(value);
      } catch (error) {
        // The database module's messages name the field and never repeat the URL (it may hold a password).
        throw invalidOption(error instanceof Error ? error.message : String(error));
      }
    }
  }
  throw invalidOption(`database ${show(value)} must be "embedded", { url: string }, { pgdata: string } or false`);
}

export function resolveOptions(options: PostmasterOptions): ResolvedOptions {
  if (typeof options !== "object" || options === null) throw invalidOption(`options ${show(options)} must be an object`);
  const cwd = options.cwd ?? process.cwd();
  if (typeof cwd !== "string" || cwd.length === 0) throw invalidOption(`cwd ${show(cwd)} must be a directory path`);
  if (!Array.isArray(options.extensions)) {
    throw invalidOption(`extensions ${show(options.extensions)} must be an array of module paths`);
  }
  for (const [index, extension] of options.extensions.entries()) {
    if (typeof extension !== "string" || extension.length === 0) {
      throw invalidOption(`extensions[${index}] ${show(extension)} must be a non-empty module path`);
    }
  }
  const socketPath = options.socketPath ?? defaultSocketPath(cwd);
  if (socketPath !== false && (typeof socketPath !== "string" || socketPath.length === 0)) {
    throw invalidOption(`socketPath ${show(socketPath)} must be a path or false`);
  }
  const logFormat = options.logFormat ?? "text";
  if (!LOG_FORMATS.includes(logFormat)) {
    throw invalidOption(`logFormat ${show(logFormat)} must be one of ${LOG_FORMATS.join(", ")}`);
  }
  if (options.logSink !== undefined && typeof options.logSink !== "function") {
    throw invalidOption(`logSink ${show(options.logSink)} must be a function`);
  }
  const backoff = { ...DEFAULT_RESTART_BACKOFF, ...(options.restartBackoff ?? {}) };
  for (const [field, value] of Object.entries(backoff)) integerOption(`restartBackoff.${field}`, value, 0, 86_400_000);
  const spareRunners = integerOption("spareRunners", options.spareRunners ?? 1, 0, MAX_SPARE_RUNNERS);
  const maxSpareRunners = integerOption("maxSpareRunners", options.maxSpareRunners ?? Math.max(SPARE_CEILING, spareRunners), 0, MAX_SPARE_RUNNERS);
  if (maxSpareRunners < spareRunners) {
    throw invalidOption(`maxSpareRunners ${show(maxSpareRunners)} must be at least spareRunners (${spareRunners})`);
  }
  const database = databaseOption(options.database);
  const shutdownTimeoutMs = integerOption("shutdownTimeoutMs", options.shutdownTimeoutMs ?? 10_000, 0, 86_400_000);
  return {
    extensions: options.extensions,
    database,
    maxWorkerProcesses: integerOption("maxWorkerProcesses", options.maxWorkerProcesses ?? 8, 1, MAX_WORKER_PROCESSES),
    socketPath: socketPath === false ? false : resolve(cwd, socketPath),
    shutdownTimeoutMs,
    logFormat,
    logSink: options.logSink,
    restartBackoff: backoff,
    spareRunners,
    maxSpareRunners,
    cwd,
    cluster: resolveClusterOption(options.cluster, { database, shutdownTimeoutMs, hostname: hostname(), pid: process.pid }),
  };
}
