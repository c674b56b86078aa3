/** Errors of the public API, and the helpers that make their messages name field, value and rule. */

/** Statuses of a dynamic worker, as PostgreSQL's `BgwHandleStatus` plus pgrx's `Untracked`. */
export enum BackgroundWorkerStatus {
  Started = "Started",
  NotYetStarted = "NotYetStarted",
  Stopped = "Stopped",
  PostmasterDied = "PostmasterDied",
  Untracked = "Untracked",
}

/** A handle operation that needs a status the worker does not have (e.g. `pid()` of a stopped worker). */
export class BackgroundWorkerStatusError extends Error {
  override readonly name = "BackgroundWorkerStatusError";
  constructor(
    readonly status: BackgroundWorkerStatus,
    message: string,
  ) {
    super(message);
  }
}

/** Every one of the postmaster's `maxWorkerProcesses` slots is taken (static and dynamic workers share them). */
export class NoFreeWorkerSlotError extends Error {
  override readonly name = "NoFreeWorkerSlotError";
}

/** Shows a value in an error message: strings quoted, long ones cut with their full length said. */
export function show(value: unknown): string {
  if (typeof value === "string") {
    const bytes = Buffer.byteLength(value);
    return bytes > 60 ? `${JSON.stringify(value.slice(0, 40))}… (${bytes} bytes)` : JSON.stringify(value);
  }
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "function") return `function ${value.name || "(anonymous)"}`;
  if (typeof value === "symbol") return value.toString();
  if (value instanceof Uint8Array) return `Uint8Array(${value.byteLength})`;
  if (Array.isArray(value)) return `array(${value.length})`;
  if (value !== null && typeof value === "object") return "object";
  return String(value);
}

/**
 * Throws `Ctor` with `message`, its stack starting at the caller of `caller` (the public method), so a
 * user's stack trace points at their own line rather than at validation internals.
 */
export function fail(
  Ctor: new (message: string) => Error,
  message: string,
  // eslint-disable-next-line @typescript-eslint/ban-types -- any function is a valid stack boundary
  caller: Function,
): never {
  const error = new Ctor(message);
  Error.captureStackTrace(error, caller);
  throw error;
}
