/** `bgworker logs [-f] [-n N] [--worker TYPE|PID] [--json] [--log-file PATH]`: the postmaster's log file. */
import { statSync } from "node:fs";
import path from "node:path";
import { writeToTerminal } from "../log.js";
import { findLogFile, follow, lastLines, type LogView, type WorkerFilter } from "../ops/log-read.js";
import { HELP } from "./help.js";
import { EXIT_OK, parseOrUsage, UsageError } from "./usage.js";
import { parsePid } from "./values.js";

const COMMAND = "logs";
const DEFAULT_LINES = 50;

export async function run(args: string[]): Promise<number> {
  const { values } = parseOrUsage(COMMAND, {
    args,
    options: {
      follow: { type: "boolean", short: "f" },
      lines: { type: "string", short: "n" },
      worker: { type: "string" },
      json: { type: "boolean" },
      "log-file": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help === true) {
    process.stdout.write(HELP.logs ?? "");
    return EXIT_OK;
  }
  const linesText = values.lines ?? String(DEFAULT_LINES);
  if (!/^[0-9]+$/.test(linesText)) throw new UsageError(`-n ${JSON.stringify(linesText)} must be a whole number of lines`, COMMAND);
  if (values.worker === "") throw new UsageError("--worker must be a worker type or pid", COMMAND);
  const filter: WorkerFilter | undefined =
    values.worker === undefined ? undefined : parsePid(values.worker) !== undefined ? { pid: Number(values.worker) } : { type: values.worker };
  const file = values["log-file"] === undefined ? findLogFile() : path.resolve(values["log-file"]);
  if (file === undefined) {
    throw new Error(`no log file found: no .bgworker/log/bgworker.log here or in a parent directory (give --log-file PATH)`);
  }
  // A path given by hand that names nothing (a typo, a directory) is said, not shown as an empty log.
  const kind = fileKind(file);
  if (kind !== "file") throw new Error(`no log file at ${file}: ${kind === "missing" ? "it does not exist" : "it is not a regular file"}`);
  const view: LogView = { filter, json: values.json === true };
  const last = lastLines(file, Number(linesText), view);
  for (const line of last.lines) writeToTerminal(process.stdout, `${line}\n`);
  if (values.follow !== true) return EXIT_OK;
  await new Promise<void>((resolve) => {
    // From where the last lines were read: a line written in between is neither lost nor printed twice.
    // The renderer goes on from the lines read: it knows which pids are the worker's, and the line before.
    const stop = follow(file, (line) => {
      const out = last.renderer.render(line);
      if (out !== undefined) writeToTerminal(process.stdout, `${out}\n`);
    }, last.position);
    // Ctrl-C, or the reader going away (`bgworker logs -f | head`), ends the follow quietly.
    const end = (): void => {
      stop();
      resolve();
    };
    process.once("SIGINT", end);
    process.once("SIGTERM", end);
    process.stdout.once("error", end);
  });
  return EXIT_OK;
}

function fileKind(file: string): "file" | "missing" | "other" {
  try {
    return statSync(file).isFile() ? "file" : "other";
  } catch {
    return "missing";
  }
}
