/** Parsers for the values of CLI options; each throws a `UsageError` naming the option, the value and the rule. */
import fs from "node:fs";
import path from "node:path";
import { BgWorkerStartTime, MAX_PID, type Datum } from "../definition.js";
import { UsageError } from "./usage.js";

const BIGINT = /^-?(?:0|[1-9][0-9]*)n$/;
const NUMBER = /^-?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]+)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$/;
const UNSIGNED = /^(?:0|[1-9][0-9]*)$/;

/** `--arg`: `123` is a number, `123n` a bigint, `true`/`false`/`null` themselves. */
export function parseDatum(command: string, text: string): Datum {
  if (text === "true") return true;
  if (text === "false") return false;
  if (text === "null") return null;
  if (BIGINT.test(text)) return BigInt(text.slice(0, -1));
  if (NUMBER.test(text)) {
    const value = Number(text);
    if (Number.isFinite(value)) return value;
  }
  throw new UsageError(
    `--arg ${JSON.stringify(text)} is not a Datum: use a number (123, -1.5), a bigint (123n), true, false or null`,
    command,
  );
}

const START_TIMES: Readonly<Record<string, BgWorkerStartTime>> = {
  postmaster: BgWorkerStartTime.PostmasterStart,
  postmasterstart: BgWorkerStartTime.PostmasterStart,
  consistent: BgWorkerStartTime.ConsistentState,
  consistentstate: BgWorkerStartTime.ConsistentState,
  "recovery-finished": BgWorkerStartTime.RecoveryFinished,
  recoveryfinished: BgWorkerStartTime.RecoveryFinished,
};

/** `--start-time`: the short names, or the enum's names in any case. */
export function parseStartTime(command: string, text: string): BgWorkerStartTime {
  const value = START_TIMES[text.toLowerCase()];
  if (value === undefined) {
    throw new UsageError(
      `--start-time ${JSON.stringify(text)} must be postmaster, consistent or recovery-finished ` +
        `(or PostmasterStart, ConsistentState, RecoveryFinished)`,
      command,
    );
  }
  return value;
}

/** `--restart-time`: milliseconds or `never`. The range is the builder's to check. */
export function parseRestartTime(command: string, text: string): number | null {
  if (text === "never") return null;
  if (!UNSIGNED.test(text)) throw new UsageError(`--restart-time ${JSON.stringify(text)} must be a number of milliseconds or "never"`, command);
  return Number(text);
}

/** A non-negative integer of milliseconds, for `--timeout`. */
export function parseMilliseconds(command: string, flag: string, text: string): number {
  if (!UNSIGNED.test(text) || !Number.isSafeInteger(Number(text))) {
    throw new UsageError(`--${flag} ${JSON.stringify(text)} must be a number of milliseconds`, command);
  }
  return Number(text);
}

/** A worker pid as typed: a positive integer; undefined when `text` is not all digits (a handle, then). */
export function parsePid(text: string): number | undefined {
  if (!UNSIGNED.test(text)) return undefined;
  const pid = Number(text);
  return pid > 0 && pid <= MAX_PID ? pid : undefined;
}

/**
 * `--library`: the postmaster resolves libraries from its own working directory, which need not be the
 * CLI's; so a path is made absolute here. `./x`, `../x` and absolute paths are paths; a bare name is a path
 * when such a file exists here (what a user typing `worker.ts` means), else a package name.
 */
export function resolveLibrary(text: string, cwd: string = process.cwd()): string {
  if (text.startsWith("file:")) return text;
  if (path.isAbsolute(text)) return text;
  if (text === "." || text === ".." || text.startsWith("./") || text.startsWith("../")) return path.resolve(cwd, text);
  return fs.existsSync(path.resolve(cwd, text)) ? path.resolve(cwd, text) : text;
}

/** `--socket`: a non-empty path. */
export function parseSocket(command: string, text: string | undefined): string | undefined {
  if (text === "") throw new UsageError("--socket must not be empty", command);
  return text;
}
