/**
 * `bgworker startup systemd [EXTENSION...] [start options]`: prints a systemd unit for this project, with
 * the resolved node and CLI, like `pm2 startup`. Install it with
 * `bgworker startup systemd ext.ts | sudo tee /etc/systemd/system/NAME.service`.
 */
import os from "node:os";
import path from "node:path";
import { entryPath } from "../package-paths.js";
import { systemdUnit } from "../ops/systemd.js";
import { HELP } from "./help.js";
import { parseStartCommand } from "./start.js";
import { EXIT_OK, UsageError } from "./usage.js";

const COMMAND = "startup";

/** The CLI's own entry point, as installed (dist/cli/main.js). */
function cliScript(): string {
  return entryPath("cli/main");
}

export async function run(args: string[]): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    process.stdout.write(HELP.startup ?? "");
    return EXIT_OK;
  }
  const [system, ...startArgs] = args;
  if (system === undefined) throw new UsageError("missing init system: systemd", COMMAND);
  if (system !== "systemd") throw new UsageError(`init system ${JSON.stringify(system)} is not supported: use systemd`, COMMAND);
  if (startArgs.some((arg) => arg === "--http-token" || arg.startsWith("--http-token="))) {
    throw new UsageError(
      "--http-token would be readable by every user in a unit file: set BGWORKER_HTTP_TOKEN in an owner-only EnvironmentFile instead",
      COMMAND,
    );
  }
  if (passwordInDatabaseArg(startArgs)) {
    throw new UsageError(
      "--database holds a password, which would be readable by every user in a unit file: set BGWORKER_DATABASE_URL in an owner-only EnvironmentFile instead",
      COMMAND,
    );
  }
  if (startArgs.includes("-d") || startArgs.includes("--daemon")) {
    throw new UsageError("--daemon does not belong in a unit: systemd runs the postmaster in the foreground", COMMAND);
  }
  // The same checks as `start`, so a unit never holds a command line that would fail.
  const { postmaster } = (() => {
    try {
      return parseStartCommand(startArgs);
    } catch (error) {
      if (error instanceof UsageError) throw new UsageError(error.message, COMMAND);
      throw error;
    }
  })();
  const cwd = process.cwd();
  const extensions = postmaster.extensions.map((extension) => (extension.startsWith(".") ? path.resolve(cwd, extension) : extension));
  const flags = optionsOnly(startArgs);
  process.stdout.write(
    systemdUnit({
      name: path.basename(cwd),
      description: `bgworker postmaster for ${path.basename(cwd)}`,
      workingDirectory: cwd,
      execStart: [process.execPath, cliScript(), "start", ...extensions, ...flags],
      user: os.userInfo().username,
      shutdownTimeoutMs: postmaster.shutdownTimeoutMs ?? 10_000,
      // The service's PATH has no nvm or project bins; PostgreSQL binaries are found through pg_config or /usr/lib.
      environment: { NODE_ENV: "production" },
    }),
  );
  return EXIT_OK;
}

/** `start`'s arguments without the positional extensions (which are passed resolved, first). */
function optionsOnly(args: readonly string[]): string[] {
  const out: string[] = [];
  const takesValue = new Set(["--database", "--pgdata", "--max-worker-processes", "--spare-runners", "--max-spare-runners", "--socket", "--shutdown-timeout", "--log-format", "--log-file", "--log-rotation-size", "--log-files", "--http"]);
  for (let i = 0; i < args.length; i += 1) {
    const arg = args[i]!;
    if (!arg.startsWith("-")) continue;
    out.push(arg);
    if (takesValue.has(arg) && i + 1 < args.length) out.push(args[++i]!);
  }
  return out;
}

/** Whether a `--database URL` argument carries a password. */
function passwordInDatabaseArg(args: readonly string[]): boolean {
  return args.some((arg, i) => {
    const url = arg.startsWith("--database=") ? arg.slice("--database=".length) : args[i - 1] === "--database" ? arg : undefined;
    if (url === undefined) return false;
    try {
      return new URL(url).password !== "";
    } catch {
      return false;
    }
  });
}
