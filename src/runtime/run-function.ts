/**
 * How a worker process runs its function and ends, shared by both programs that become a worker: the runner
 * of `bgworker start` (runner.ts) and the Node child of an in-server worker (inserver/child.ts). They differ
 * only in how the last words and the exit travel (IPC to the postmaster, a socket to the backend), given here
 * as `WorkerEnd`. The outcome is SPEC §4's: return -> 0, throw -> 1 (logged as an ERROR), `process.exit(n)` -> n.
 */
import { decodeDatum, type WorkerDefinition } from "../definition.js";
import type { LogLevel } from "../log.js";

/** Unwinds the worker's code when it must end (FATAL); never shown to the user. */
export class WorkerExit extends Error {
  constructor(readonly code: number) {
    super(`background worker exiting with code ${code}`);
  }
}

/** How a worker program logs and exits. */
export interface WorkerEnd {
  log(level: LogLevel, message: string, detail?: string): void;
  /** Ends the process with `code`, once what was logged before has gone out. */
  exit(code: number): void;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function errorStack(error: unknown): string | undefined {
  return error instanceof Error && error.stack !== undefined ? error.stack : undefined;
}

/**
 * Loads the worker's function, calls `entered` just before calling it (the moment the worker counts as
 * Started, SPEC §5), calls it with its argument and ends the process by its outcome. A library or function
 * that cannot be loaded is SPEC §3's one log line and exit code 1.
 */
export async function runFunction(
  definition: WorkerDefinition,
  load: () => Promise<Record<string, unknown>>,
  entered: () => void,
  end: WorkerEnd,
): Promise<void> {
  const notFound = `background worker "${definition.name}": function "${definition.function}" not found in library "${definition.library}"`;
  let fn: unknown;
  try {
    fn = (await load())[definition.function];
  } catch (error) {
    end.log("LOG", notFound, errorText(error));
    return end.exit(1);
  }
  if (typeof fn !== "function") {
    end.log("LOG", notFound, fn === undefined ? undefined : `"${definition.function}" is a ${typeof fn}, not a function`);
    return end.exit(1);
  }
  entered();
  try {
    await (fn as (arg: unknown) => unknown)(decodeDatum(definition.argument));
  } catch (error) {
    if (error instanceof WorkerExit) return;
    end.log("ERROR", `background worker "${definition.type}": ${errorText(error)}`, errorStack(error));
    return end.exit(1);
  }
  end.exit(0);
}

/**
 * What ends the worker when nothing else caught an error: an uncaught exception or unhandled rejection is
 * logged and is exit code 1. A `WorkerExit` (thrown from a signal handler or a callback) is already on its
 * way out. The returned function does the same for the promise of becoming the worker.
 */
export function endOnUncaught(end: WorkerEnd): (error: unknown) => void {
  const ended = (what: string) => (error: unknown) => {
    if (error instanceof WorkerExit) return;
    end.log("ERROR", `${what}${errorText(error)}`, errorStack(error));
    end.exit(1);
  };
  process.on("uncaughtException", ended("uncaught exception: "));
  process.on("unhandledRejection", ended("unhandled rejection: "));
  return ended("");
}
