/**
 * Usage errors: the CLI's one style for "you called it wrong" (exit status 2, one line on stderr). Every
 * command, `start` included, parses its arguments with `parseOrUsage` so that the messages read alike.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";

/** Exit statuses of every command (SPEC §2). */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** The command line is wrong: exit status 2, the message on one line, and a pointer to the command's help. */
export class UsageError extends Error {
  override readonly name = "UsageError";
  /** The command whose help to point at, e.g. "launch"; undefined for the top level. */
  readonly command: string | undefined;

  constructor(message: string, command?: string) {
    super(message);
    this.command = command;
  }

  /** The full line, e.g. `unknown option --foo (see "bgworker launch --help")`. */
  line(): string {
    return `${this.message} (see "bgworker${this.command === undefined ? "" : ` ${this.command}`} --help")`;
  }
}

/** Node's parseArgs messages are multi-line and talk about "positional arguments"; these are ours. */
function rephrase(error: Error & { code?: string }): string {
  const quoted = /'([^']+)'/.exec(error.message)?.[1] ?? "";
  const option = quoted.replace(/ <value>$/, "");
  switch (error.code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown option ${option}`;
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return `unexpected argument ${JSON.stringify(option)}`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      if (error.message.includes("argument missing")) return `option ${option} needs a value`;
      if (error.message.includes("does not take an argument")) return `option ${option} does not take a value`;
      if (error.message.includes("ambiguous")) return `option ${option} needs a value (for a value starting with "-", write ${option}=VALUE)`;
      return error.message.split("\n")[0] ?? error.message;
    default:
      return error.message.split("\n")[0] ?? error.message;
  }
}

/** `parseArgs` in strict mode, its errors turned into `UsageError`s for `command`. */
export function parseOrUsage<T extends ParseArgsConfig>(command: string, config: T): ReturnType<typeof parseArgs<T>> {
  try {
    // strict is parseArgs's default: unknown options and unexpected arguments throw.
    return parseArgs<T>(config);
  } catch (error) {
    if (error instanceof Error && typeof (error as { code?: unknown }).code === "string") {
      throw new UsageError(rephrase(error), command);
    }
    throw error;
  }
}

/** Exactly `names.length` positionals, else a usage error naming what is missing or extra. */
export function expectPositionals(command: string, positionals: readonly string[], names: readonly string[]): string[] {
  if (positionals.length < names.length) throw new UsageError(`missing ${names[positionals.length]}`, command);
  if (positionals.length > names.length) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[names.length])}`, command);
  return [...positionals];
}

/** A flag that must be given. */
export function required<T>(command: string, flag: string, value: T | undefined): T {
  if (value === undefined) throw new UsageError(`option --${flag} is required`, command);
  return value;
}

/** Runs `fn`; a TypeError or RangeError it throws (a builder's validation) is a usage error of `command`. */
export function validating<T>(command: string, fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    if (error instanceof TypeError || error instanceof RangeError) throw new UsageError(error.message, command);
    throw error;
  }
}
