/** `bgworker launch --library L --function F [...]`: a dynamic worker, built and checked by the builder. */
import { BackgroundWorkerBuilder, definitionOf, fieldOf, type BuilderField } from "../builder.js";
import path from "node:path";
import { connect } from "../control/client.js";
import { BackgroundWorkerStatus, BackgroundWorkerStatusError, codeOf, makeError } from "../errors.js";
import { findLogFile } from "../ops/log-read.js";
import { listPostmasters, registryDir, type RegistryEntry } from "../ops/registry.js";
import { HELP } from "./help.js";
import { EXIT_OK, parseOrUsage, required, validating } from "./usage.js";
import { parseDatum, parseRestartTime, parseSocket, parseStartTime, resolveLibrary } from "./values.js";

const COMMAND = "launch";

/** The builder's errors say which field they are about; on the command line the flag is what the user wrote. */
const FLAGS: Readonly<Record<BuilderField, string>> = {
  name: "--name",
  type: "--type",
  library: "--library",
  function: "--function",
  argument: "--arg",
  extra: "--extra",
  startTime: "--start-time",
  restartTime: "--restart-time",
  notifyPid: "launch",
  scope: "launch",
  startup: "launch",
};

/** Names the flag (or the command, for a rule across fields) in place of the builder method the message starts with. */
function inFlagTerms(error: unknown): unknown {
  const code = codeOf(error);
  if (!(error instanceof TypeError || error instanceof RangeError) || code === undefined) return error;
  const field = fieldOf(error);
  const where = field === undefined ? "launch" : FLAGS[field];
  const separator = error.message.indexOf(": ");
  const rest = separator === -1 ? error.message : error.message.slice(separator + 2);
  return makeError(error instanceof RangeError ? RangeError : TypeError, code, `${where}: ${rest}`);
}

function parse(args: string[]) {
  return parseOrUsage(COMMAND, {
    args,
    options: {
      library: { type: "string" },
      function: { type: "string" },
      name: { type: "string" },
      type: { type: "string" },
      arg: { type: "string" },
      extra: { type: "string" },
      spi: { type: "boolean" },
      shmem: { type: "boolean" },
      "start-time": { type: "string" },
      "restart-time": { type: "string" },
      wait: { type: "boolean" },
      json: { type: "boolean" },
      socket: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
}

/** Every flag checked before connecting, so a usage error never depends on a postmaster running. */
function builderFrom(values: ReturnType<typeof parse>["values"]): BackgroundWorkerBuilder {
  const library = required(COMMAND, "library", values.library);
  const fn = required(COMMAND, "function", values.function);
  const argument = values.arg === undefined ? null : parseDatum(COMMAND, values.arg);
  const startTime = values["start-time"] === undefined ? undefined : parseStartTime(COMMAND, values["start-time"]);
  const restartTime = values["restart-time"] === undefined ? null : parseRestartTime(COMMAND, values["restart-time"]);
  return validating(COMMAND, () => {
    try {
      return build();
    } catch (error) {
      throw inFlagTerms(error);
    }
  });

  function build(): BackgroundWorkerBuilder {
    const builder = new BackgroundWorkerBuilder(values.name ?? fn).setLibrary(resolveLibrary(library)).setFunction(fn);
    if (values.type !== undefined) builder.setType(values.type);
    // Before setStartTime: SPI access moves the start time, and an explicit --start-time wins.
    if (values.spi === true) builder.enableSpiAccess();
    if (startTime !== undefined) builder.setStartTime(startTime);
    if (values.shmem === true) builder.enableShmemAccess();
    builder.setRestartTime(restartTime).setArgument(argument);
    if (values.extra !== undefined) builder.setExtra(values.extra);
    // The cross-field rules (e.g. SPI with PostmasterStart) are checked here too, not after connecting.
    definitionOf(builder);
    return builder;
  }
}

export async function run(args: string[]): Promise<number> {
  const { values } = parse(args);
  if (values.help === true) {
    process.stdout.write(HELP.launch ?? "");
    return EXIT_OK;
  }
  const builder = builderFrom(values);
  const socket = parseSocket(COMMAND, values.socket);
  const client = await connect(socket);
  try {
    const worker = await client.loadDynamic(builder);
    let pid: number | undefined;
    if (values.wait === true) {
      try {
        pid = await worker.waitForStartup();
      } catch (error) {
        if (error instanceof BackgroundWorkerStatusError) {
          const { name, type } = definitionOf(builder);
          throw new Error(
            error.status === BackgroundWorkerStatus.PostmasterDied
              ? `the postmaster died before background worker "${name}" (${worker.handle}) started`
              : `background worker "${name}" (${worker.handle}) did not start: it is ${error.status} (${whereToLook(type, client.postmasterPid)})`,
          );
        }
        throw error;
      }
    }
    if (values.json === true) {
      process.stdout.write(JSON.stringify(pid === undefined ? { handle: worker.handle } : { handle: worker.handle, pid }) + "\n");
    } else {
      // SPEC §2: the pid with --wait (what a script wants to signal), else the handle; --json gives both.
      process.stdout.write(`${pid ?? worker.handle}\n`);
    }
  } finally {
    await client.close();
  }
  return EXIT_OK;
}

/** A word as a POSIX shell reads it back: as it is when it is plain, else single-quoted. */
export function shellWord(word: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * Where the failed worker's lines are: the `logs` command that shows them, with the postmaster's log file as
 * its registry entry names it (`status --all`'s source). `--log-file` is part of the command when `logs`
 * run from here would find another file, or none.
 */
export function whereToLook(type: string, postmasterPid: number, cwd: string = process.cwd(), registry: string = registryDir()): string {
  const command = `bgworker logs --worker ${shellWord(type)}`;
  let entry: RegistryEntry | undefined;
  try {
    entry = listPostmasters(registry).find((each) => each.pid === postmasterPid);
  } catch {
    entry = undefined;
  }
  if (entry === undefined) return `see \`${command}\` where the postmaster runs`;
  if (entry.logFile === null) return `the postmaster writes no log file (--log-file none): see its terminal output about "${type}"`;
  const found = findLogFile(cwd);
  if (found !== undefined && path.resolve(found) === path.resolve(entry.logFile)) return `see \`${command}\`; log file ${entry.logFile}`;
  return `see \`${command} --log-file ${shellWord(entry.logFile)}\``;
}
