/**
 * `bgworker start EXTENSION...`: a postmaster in the foreground. Signals map to shutdown modes as with
 * `pg_ctl`: SIGTERM smart, SIGINT (Ctrl-C) fast, SIGQUIT immediate.
 */
import { existsSync, readFileSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { validateDatabaseOption, withoutPassword } from "../database/options.js";
import type { ClusterOption } from "../cluster/options.js";
import type { DatabaseOption } from "../database/types.js";
import { defaultSocketPath, SOCKET_ENV } from "../control/socket-path.js";
import { guardTerminalStream, LOG_FORMATS, Logger, teeSink, terminalSink, writeToTerminal, type LogFormat, type LogSink } from "../log.js";
import { DAEMON_ENV, isDaemonChild, reportToStarter, startDetached } from "../ops/daemon.js";
import { assertNotInServer } from "../inserver/mode.js";
import { HTTP_TOKEN_ENV, isLoopback, OpsServer, parseHttpAddress, type HttpAddress } from "../ops/http.js";
import { DEFAULT_LOG_FILE, DEFAULT_LOG_FILES, DEFAULT_LOG_ROTATION_SIZE, parseSize, RotatingLogFile } from "../ops/log-file.js";
import { LogTail } from "../ops/log-tail.js";
import { register } from "../ops/registry.js";
import { looksLikeModuleFile } from "../modules.js";
import { Postmaster, type PostmasterOptions } from "../postmaster/postmaster.js";
import { ignoreSignals } from "../runtime/signals.js";
import type { ShutdownMode } from "../status.js";
import { HELP } from "./help.js";
import { EXIT_FAILURE, EXIT_OK, parseOrUsage, UsageError, validating } from "./usage.js";

/**
 * As `pg_ctl stop -m MODE`. SIGPWR (a UPS daemon says the power is failing) and SIGXCPU (the soft CPU-time
 * limit, before the hard limit's SIGKILL) would end the process with everything left running: they stop it
 * as Ctrl-C does instead.
 */
const SIGNAL_MODES: Readonly<Record<string, ShutdownMode>> = { SIGTERM: "smart", SIGINT: "fast", SIGQUIT: "immediate", SIGPWR: "fast", SIGXCPU: "fast" };

function wholeNumber(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^[0-9]+$/.test(value)) throw new UsageError(`--${flag} ${JSON.stringify(value)} must be a whole number`, "start");
  return Number(value);
}

/** The environment variable that may hold the database URL, so that its password stays off the command line. */
export const DATABASE_URL_ENV = "BGWORKER_DATABASE_URL";

function databaseOf(
  values: { database?: string; pgdata?: string; "no-database"?: boolean },
  env: NodeJS.ProcessEnv,
): DatabaseOption | false {
  const chosen = [values.database !== undefined, values.pgdata !== undefined, values["no-database"] === true].filter(Boolean).length;
  if (chosen > 1) throw new UsageError("--database, --pgdata and --no-database exclude each other: give at most one", "start");
  if (values.database !== undefined) return checkedUrl("--database", values.database);
  if (values.pgdata !== undefined) return { pgdata: values.pgdata };
  if (values["no-database"] === true) return false;
  const fromEnv = env[DATABASE_URL_ENV];
  if (fromEnv !== undefined && fromEnv !== "") return checkedUrl(DATABASE_URL_ENV, fromEnv);
  return "embedded";
}

/** A malformed URL is a usage error (exit 2), found before anything starts; the message never repeats the URL. */
function checkedUrl(source: string, url: string): DatabaseOption {
  return validating("start", () => {
    try {
      return validateDatabaseOption({ url });
    } catch (error) {
      if (error instanceof TypeError) throw new TypeError(error.message.replace(/^database\.url: /, `${source}: `));
      throw error;
    }
  });
}

/**
 * A password given in `--database` is readable by every local user in /proc/PID/cmdline: the process title
 * (which on Linux rewrites that memory) is set to the command line without it. Returns whether it did.
 */
function hidePasswordFromCommandLine(url: string): boolean {
  const hidden = withoutPassword(url);
  if (hidden === null) return false;
  // The command line as it was typed (Linux), so the title is never longer than the memory it replaces.
  let original = [process.argv0, ...process.execArgv, ...process.argv.slice(1)];
  try {
    original = readFileSync("/proc/self/cmdline", "utf8").replace(/\0$/, "").split("\0");
  } catch {
    // not Linux: Node's own view of the arguments
  }
  const argv = original.map((arg) => (arg === url ? hidden : arg === `--database=${url}` ? `--database=${hidden}` : arg));
  process.title = argv.join(" ");
  return true;
}

/**
 * An extension named like a file of the working directory without `./` (`examples/x/extension.ts`) is that
 * file, as with `launch --library`; otherwise the name is left to `import()` (a package name, a path, a URL).
 */
function extensionOf(name: string): string {
  if (name.startsWith(".") || isAbsolute(name) || name.startsWith("file:")) return name;
  // `ext.ts` is a file even when it is missing (then reported as such), not a package named "ext.ts".
  return existsSync(resolve(name)) || looksLikeModuleFile(name) ? `./${name}` : name;
}

/** What `start` does around the postmaster: its log file, detaching, HTTP. */
export interface StartOps {
  /** Absolute path of the log file, or null with `--log-file none`. */
  readonly logFile: string | null;
  readonly logRotationSize: number;
  readonly logFiles: number;
  readonly daemon: boolean;
  readonly http: (HttpAddress & { readonly token: string | undefined }) | null;
}

export interface StartCommand {
  readonly postmaster: PostmasterOptions;
  readonly ops: StartOps;
}

function httpOf(address: string | undefined, token: string | undefined): StartOps["http"] {
  if (address === undefined) {
    if (token !== undefined) throw new UsageError("--http-token needs --http", "start");
    return null;
  }
  assertNotInServer("bgworker start --http", "http");
  const parsed = parseHttpAddress(address);
  if (parsed === undefined) throw new UsageError(`--http ${JSON.stringify(address)} must be [HOST:]PORT, e.g. 9187 or 127.0.0.1:9187`, "start");
  const chosen = token ?? process.env[HTTP_TOKEN_ENV];
  if (!isLoopback(parsed.host) && (chosen === undefined || chosen === "")) {
    throw new UsageError(`--http ${JSON.stringify(address)} is not a loopback address: give a token with --http-token or ${HTTP_TOKEN_ENV}`, "start");
  }
  return { ...parsed, token: chosen === "" ? undefined : chosen };
}

/** Parses `start`'s arguments into Postmaster options and what surrounds it; throws UsageError. */
export function parseStartCommand(args: readonly string[], env: NodeJS.ProcessEnv = process.env, cwd: string = process.cwd()): StartCommand {
  const parsed = parseOrUsage("start", {
    args: [...args],
    allowPositionals: true,
    options: {
      database: { type: "string" },
      pgdata: { type: "string" },
      "no-database": { type: "boolean" },
      "max-worker-processes": { type: "string" },
      "spare-runners": { type: "string" },
      "max-spare-runners": { type: "string" },
      socket: { type: "string" },
      "shutdown-timeout": { type: "string" },
      "log-format": { type: "string" },
      "log-file": { type: "string" },
      "log-rotation-size": { type: "string" },
      "log-files": { type: "string" },
      daemon: { type: "boolean", short: "d" },
      http: { type: "string" },
      "http-token": { type: "string" },
      cluster: { type: "string" },
      "node-id": { type: "string" },
      "lease-ms": { type: "string" },
      "renew-ms": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  const { values, positionals } = parsed;
  if (positionals.length === 0) throw new UsageError("missing EXTENSION: give at least one extension module", "start");
  const logFormat = values["log-format"] ?? "text";
  if (!(LOG_FORMATS as readonly string[]).includes(logFormat)) {
    throw new UsageError(`--log-format ${JSON.stringify(logFormat)} must be one of ${LOG_FORMATS.join(", ")}`, "start");
  }
  const maxWorkerProcesses = wholeNumber("max-worker-processes", values["max-worker-processes"]);
  const shutdownTimeoutMs = wholeNumber("shutdown-timeout", values["shutdown-timeout"]);
  const spareRunners = wholeNumber("spare-runners", values["spare-runners"]);
  const maxSpareRunners = wholeNumber("max-spare-runners", values["max-spare-runners"]);
  const logFileText = values["log-file"];
  if (logFileText === "") throw new UsageError('--log-file must be a path, or "none"', "start");
  const logFile = logFileText === "none" ? null : resolve(cwd, logFileText ?? DEFAULT_LOG_FILE);
  const sizeText = values["log-rotation-size"];
  const logRotationSize = sizeText === undefined ? DEFAULT_LOG_ROTATION_SIZE : parseSize(sizeText);
  if (logRotationSize === undefined) {
    throw new UsageError(`--log-rotation-size ${JSON.stringify(sizeText)} must be a size such as 10MB, 512kB or a number of bytes (0: never rotate)`, "start");
  }
  const logFiles = wholeNumber("log-files", values["log-files"]) ?? DEFAULT_LOG_FILES;
  if (logFiles < 1 || logFiles > 1000) throw new UsageError(`--log-files ${logFiles} must be from 1 to 1000`, "start");
  if (values.daemon === true && logFile === null) throw new UsageError("--daemon needs a log file: drop --log-file none", "start");
  const postmaster: PostmasterOptions = {
    extensions: positionals.map(extensionOf),
    database: databaseOf(values, env),
    logFormat: logFormat as LogFormat,
    ...(maxWorkerProcesses === undefined ? {} : { maxWorkerProcesses }),
    ...(shutdownTimeoutMs === undefined ? {} : { shutdownTimeoutMs }),
    ...(spareRunners === undefined ? {} : { spareRunners }),
    ...(maxSpareRunners === undefined ? {} : { maxSpareRunners }),
    ...socketOf(values.socket ?? process.env[SOCKET_ENV]),
    ...clusterOf(values),
  };
  return {
    postmaster,
    ops: { logFile, logRotationSize, logFiles, daemon: values.daemon === true, http: httpOf(values.http, values["http-token"]) },
  };
}

/**
 * `--cluster NAME [--node-id ID] [--lease-ms MS] [--renew-ms MS]`: the cluster option; its values are
 * checked by the Postmaster's own option check (ERR_BGWORKER_INVALID_OPTION), as for the API.
 */
function clusterOf(values: { cluster?: string; "node-id"?: string; "lease-ms"?: string; "renew-ms"?: string }): { cluster?: ClusterOption } {
  if (values.cluster === undefined) {
    for (const flag of ["node-id", "lease-ms", "renew-ms"] as const) {
      if (values[flag] !== undefined) throw new UsageError(`--${flag} needs --cluster NAME`, "start");
    }
    return {};
  }
  const leaseMs = wholeNumber("lease-ms", values["lease-ms"]);
  const renewMs = wholeNumber("renew-ms", values["renew-ms"]);
  return {
    cluster: {
      name: values.cluster,
      ...(values["node-id"] === undefined ? {} : { nodeId: values["node-id"] }),
      ...(leaseMs === undefined ? {} : { leaseMs }),
      ...(renewMs === undefined ? {} : { renewMs }),
    },
  };
}

/** Parses `start`'s arguments into Postmaster options; throws UsageError. */
export function parseStart(args: readonly string[], env: NodeJS.ProcessEnv = process.env): PostmasterOptions {
  return parseStartCommand(args, env).postmaster;
}

/** `--socket`, else `$BGWORKER_SOCKET` (as the client commands read it), else the postmaster's default. */
function socketOf(socket: string | undefined): { socketPath?: string } {
  return socket === undefined || socket === "" ? {} : { socketPath: socket };
}

function errorText(error: unknown): { message: string; detail?: string } {
  if (!(error instanceof Error)) return { message: String(error) };
  return error.stack === undefined ? { message: error.message } : { message: error.message, detail: error.stack };
}

export async function run(args: string[]): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    process.stdout.write(HELP.start ?? "");
    return EXIT_OK;
  }
  const { postmaster: options, ops } = parseStartCommand(args);
  const detached = isDaemonChild();
  // Only this process is the detached postmaster; its workers (and anything they start) are not.
  delete process.env[DAEMON_ENV];
  if (ops.daemon && !detached) {
    const pid = await startDetached({ script: process.argv[1] ?? "", args, cwd: process.cwd(), logFile: ops.logFile! });
    writeToTerminal(process.stdout, `${pid}\n`);
    return EXIT_OK;
  }
  try {
    return await runPostmaster(options, ops, detached, args);
  } catch (error) {
    if (detached) {
      await reportToStarter({ t: "failed", message: error instanceof Error ? (error.message.split("\n")[0] ?? error.message) : String(error) });
    }
    throw error;
  }
}

/**
 * Where the log goes: the terminal (unless detached: its stderr is the file already), the file, and the
 * in-memory tail that the dashboard shows.
 */
function openLog(ops: StartOps, detached: boolean): { sink: LogSink; tail: LogTail; close: () => void } {
  const file = ops.logFile === null ? undefined : new RotatingLogFile(ops.logFile, { rotationSize: ops.logRotationSize, files: ops.logFiles });
  const tail = new LogTail();
  const terminal = detached ? undefined : terminalSink(process.stderr);
  const sinks: LogSink[] = [tail.sink];
  if (terminal !== undefined) sinks.unshift(terminal);
  if (file !== undefined) {
    sinks.push((line) => file.write(line, (error) => terminal?.(`bgworker: cannot write the log file ${file.path}: ${error.message}`)));
  }
  return { sink: teeSink(...sinks), tail, close: () => file?.close() };
}

/** The postmaster in this process, with its log file, optional HTTP server and registry entry. */
async function runPostmaster(options: PostmasterOptions, ops: StartOps, detached: boolean, args: readonly string[]): Promise<number> {
  const log = openLog(ops, detached);
  guardTerminalStream(process.stdout);
  const postmaster = validating("start", () => new Postmaster({ ...options, logSink: log.sink }));
  warnOfPasswordOnCommandLine(options, args, log.sink);
  const logger = new Logger({ format: options.logFormat ?? "text", sink: log.sink });
  // SIGUSR1 would open Node's inspector, SIGUSR2 and others would kill: none means anything to a postmaster.
  ignoreSignals();
  for (const [signal, mode] of Object.entries(SIGNAL_MODES)) {
    process.on(signal, () => void postmaster.stop(mode));
  }
  // As PostgreSQL's postmaster (and `pg_ctl reload`): a closing terminal's SIGHUP reloads, never stops.
  process.on("SIGHUP", () => {
    postmaster.reload().catch((error: unknown) => logger.log("WARNING", `reload: ${errorText(error).message}`));
  });
  // An error nobody caught (an extension's callback in this process, a bug of ours) must not leave workers or
  // a managed server behind: stop everything at once, as PostgreSQL's postmaster does on a PANIC, and exit 1.
  let crashed = false;
  const crash = (what: string, error: unknown): void => {
    const { message, detail } = errorText(error);
    logger.log("FATAL", `${what} in the postmaster: ${message}${crashed ? "" : "; terminating every worker and shutting down"}`, detail === undefined ? {} : { detail });
    if (crashed) return;
    crashed = true;
    void postmaster.stop("immediate");
    // Whatever state the error left behind, the process ends.
    setTimeout(() => process.exit(EXIT_FAILURE), options.shutdownTimeoutMs ?? 10_000).unref();
  };
  process.on("uncaughtException", (error) => crash("uncaught exception", error));
  process.on("unhandledRejection", (reason) => crash("unhandled rejection", reason));
  // HTTP first: a port that is taken fails the start before anything else is started; the dashboard then
  // shows the start-up itself.
  let server: OpsServer | undefined;
  if (ops.http !== null) {
    try {
      server = new OpsServer({ host: ops.http.host, port: ops.http.port, token: ops.http.token, source: { status: () => postmaster.status(), onChange: (l) => postmaster.onChange(l), logTail: log.tail } });
      await server.listen();
    } catch (error) {
      await server?.close();
      throw new Error(`cannot serve HTTP on ${ops.http.host}:${ops.http.port}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  try {
    await postmaster.start();
  } catch (error) {
    // _PG_init, a startup hook, the socket or the database failed: the postmaster has logged it as FATAL and
    // stopped everything it started; main prints the one-line error.
    await server?.close();
    throw error;
  }
  const unregister = registerSafely(options, ops, server?.url ?? null);
  process.once("exit", unregister);
  if (server?.url !== undefined) writeToTerminal(process.stdout, `serving HTTP on ${server.url}\n`);
  if (!crashed) writeToTerminal(process.stdout, "ready\n");
  if (detached && !crashed) await reportToStarter({ t: "ready", pid: process.pid });
  await postmaster.closed;
  await server?.close();
  unregister();
  log.close();
  return postmaster.failure === undefined && !crashed ? EXIT_OK : EXIT_FAILURE;
}

/** A password typed in `--database` is removed from the command line, with a warning in the log. */
function warnOfPasswordOnCommandLine(options: PostmasterOptions, args: readonly string[], sink: LogSink): void {
  const { database } = options;
  if (typeof database !== "object" || !("url" in database)) return;
  if (!args.some((arg) => arg === "--database" || arg.startsWith("--database="))) return;
  if (!hidePasswordFromCommandLine(database.url)) return;
  new Logger({ format: options.logFormat ?? "text", sink }).log(
    "WARNING",
    `the password given in --database was readable by other local users in the command line until now and has been removed from it; ` +
      `give it in ${DATABASE_URL_ENV}, PGPASSWORD or a password file (PGPASSFILE, ~/.pgpass) instead`,
  );
}

/** The registry is a convenience for `status --all`: failing to write it is not a reason not to run. */
function registerSafely(options: PostmasterOptions, ops: StartOps, http: string | null): () => void {
  try {
    return register({
      pid: process.pid,
      cwd: process.cwd(),
      socket: options.socketPath === false ? null : resolve(options.socketPath ?? defaultSocketPath()),
      logFile: ops.logFile,
      http,
      extensions: options.extensions,
      startedAt: new Date().toISOString(),
    });
  } catch {
    return () => undefined;
  }
}
