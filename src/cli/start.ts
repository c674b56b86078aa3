/**
 * `bgworker start EXTENSION...`: a postmaster in the foreground. SIGHUP reloads; signals map to shutdown modes as with
 * `pg_ctl`: SIGTERM smart, SIGINT (Ctrl-C) fast, SIGQUIT immediate.
 */
import { existsSync, readFileSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { validateDatabaseOption, withoutPassword } from "../database/options.js";
import type { DatabaseOption } from "../database/types.js";
import { LOG_FORMATS, Logger, type LogFormat } from "../log.js";
import { SOCKET_ENV } from "../control/socket-path.js";
import { looksLikeModuleFile } from "../modules.js";
import { Postmaster, type PostmasterOptions } from "../postmaster/postmaster.js";
import { ignoreSignals } from "../runtime/signals.js";
import type { ShutdownMode } from "../status.js";
import { HELP } from "./help.js";
import { EXIT_FAILURE, EXIT_OK, parseOrUsage, UsageError, validating } from "./usage.js";

const SIGNAL_MODES: Readonly<Record<string, ShutdownMode>> = { SIGTERM: "smart", SIGINT: "fast", SIGQUIT: "immediate" };

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

/** Parses `start`'s arguments into Postmaster options; throws UsageError. */
export function parseStart(args: readonly string[], env: NodeJS.ProcessEnv = process.env): PostmasterOptions {
  const parsed = parseOrUsage("start", {
    args: [...args],
    allowPositionals: true,
    options: {
      database: { type: "string" },
      pgdata: { type: "string" },
      "no-database": { type: "boolean" },
      "max-worker-processes": { type: "string" },
      socket: { type: "string" },
      "shutdown-timeout": { type: "string" },
      "log-format": { type: "string" },
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
  return {
    extensions: positionals.map(extensionOf),
    database: databaseOf(values, env),
    logFormat: logFormat as LogFormat,
    ...(maxWorkerProcesses === undefined ? {} : { maxWorkerProcesses }),
    ...(shutdownTimeoutMs === undefined ? {} : { shutdownTimeoutMs }),
    ...socketOf(values.socket ?? process.env[SOCKET_ENV]),
  };
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
  const options = parseStart(args);
  const postmaster = validating("start", () => new Postmaster(options));
  const { database } = options;
  if (typeof database === "object" && "url" in database && args.some((arg) => arg === "--database" || arg.startsWith("--database="))) {
    if (hidePasswordFromCommandLine(database.url)) {
      new Logger({ format: options.logFormat ?? "text" }).log(
        "WARNING",
        `the password given in --database was readable by other local users in the command line until now and has been removed from it; ` +
          `give it in ${DATABASE_URL_ENV}, PGPASSWORD or a password file (PGPASSFILE, ~/.pgpass) instead`,
      );
    }
  }
  const logger = new Logger({ format: options.logFormat ?? "text" });
  // SIGUSR1 would open Node's inspector and SIGUSR2 would kill: neither means anything to a postmaster.
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
  try {
    await postmaster.start();
  } catch (error) {
    // _PG_init, a startup hook, the socket or the database failed: everything started is stopped again.
    if (!crashed) logger.log("FATAL", errorText(error).message);
    throw error;
  }
  if (!crashed) process.stdout.write("ready\n");
  await postmaster.closed;
  return postmaster.failure === undefined && !crashed ? EXIT_OK : EXIT_FAILURE;
}
