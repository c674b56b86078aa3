#!/usr/bin/env node
/**
 * The `bgworker` (alias `bgw`) command. Each command lives in its own module, loaded only when used, and
 * exports `run(args): Promise<number>` (the exit status). Every error ends here as one line on stderr:
 * exit status 2 for usage errors, 1 for anything else.
 */
import "../node-version.js"; // first: an older Node stops here with one line
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../package-paths.js";
import { HELP, MAIN_HELP } from "./help.js";
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError } from "./usage.js";

interface CommandModule {
  run(args: string[]): Promise<number>;
}

const COMMANDS: Readonly<Record<string, () => Promise<CommandModule>>> = {
  start: () => import("./start.js"),
  status: () => import("./status.js"),
  launch: () => import("./launch.js"),
  terminate: () => import("./terminate.js"),
  stop: () => import("./stop.js"),
  reload: () => import("./reload.js"),
  logs: () => import("./logs.js"),
  restart: () => import("./restart.js"),
  startup: () => import("./startup.js"),
  "pg-install": () => import("./pg-install.js"),
};

/** "start, status, ... or reload": every command, for the messages that list them. */
const COMMAND_LIST = Object.keys(COMMANDS).join(", ").replace(/, ([^,]+)$/, " or $1");

function version(): string {
  const pkg = JSON.parse(readFileSync(join(packageRoot(), "package.json"), "utf8")) as { version?: unknown };
  return typeof pkg.version === "string" ? pkg.version : "unknown";
}

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  if (command === undefined) throw new UsageError(`missing command: ${COMMAND_LIST}`);
  if (command === "-h" || command === "--help" || command === "help") {
    const topic = command === "help" ? args[0] : undefined;
    process.stdout.write(topic !== undefined && HELP[topic] !== undefined ? HELP[topic] : MAIN_HELP);
    return EXIT_OK;
  }
  if (command === "-v" || command === "--version") {
    process.stdout.write(`bgworker ${version()}\n`);
    return EXIT_OK;
  }
  const load = COMMANDS[command];
  if (load === undefined) {
    throw new UsageError(
      command.startsWith("-")
        ? `unknown option ${command} before the command`
        : `unknown command ${JSON.stringify(command)} (expected ${COMMAND_LIST})`,
    );
  }
  return (await load()).run(args);
}

/** One line, whatever the error: the message's first line, or the stack when BGWORKER_DEBUG is set. */
function report(error: unknown): number {
  if (error instanceof UsageError) {
    process.stderr.write(`bgworker: ${error.line()}\n`);
    return EXIT_USAGE;
  }
  if (process.env.BGWORKER_DEBUG && error instanceof Error && error.stack !== undefined) {
    process.stderr.write(`${error.stack}\n`);
    return EXIT_FAILURE;
  }
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`bgworker: ${message.split("\n")[0] ?? message}\n`);
  return EXIT_FAILURE;
}

// A reader that goes away (`bgworker status | head -1`) is not an error of ours. Any other failure of stdout
// (EIO from a terminal that vanished) fails a client command's exit status, but never throws: in `start` an
// uncaught error would take the postmaster down, and its log goes on to the file (log.ts guards the stream).
let stdoutFailed = false;
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code === "EPIPE" || process.argv[2] === "start") return;
  stdoutFailed = true;
  process.exitCode = EXIT_FAILURE;
});

// exitCode rather than exit(): the output is flushed, and a command's open handles show up as a hang in tests.
main(process.argv.slice(2)).then(
  (status) => {
    process.exitCode = stdoutFailed && status === EXIT_OK ? EXIT_FAILURE : status;
  },
  (error: unknown) => {
    process.exitCode = report(error);
  },
);
