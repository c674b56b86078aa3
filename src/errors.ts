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
    if (bytes <= 60) return JSON.stringify(value);
    const cut = value.length > 40;
    return `${JSON.stringify(cut ? value.slice(0, 40) : value)}${cut ? "…" : ""} (${bytes} bytes)`;
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

/** An error as it crosses a process boundary (IPC or the control socket). */
export interface WireError {
  readonly name: string;
  readonly message: string;
  readonly status?: string;
}

export function errorToWire(error: unknown): WireError {
  if (error instanceof BackgroundWorkerStatusError) return { name: error.name, message: error.message, status: error.status };
  if (error instanceof Error) return { name: error.name, message: error.message };
  return { name: "Error", message: String(error) };
}

/** Re-creates the error on this side, so `instanceof NoFreeWorkerSlotError` and friends hold for the caller. */
export function errorFromWire(wire: WireError): Error {
  switch (wire.name) {
    case "NoFreeWorkerSlotError":
      return new NoFreeWorkerSlotError(wire.message);
    case "BackgroundWorkerStatusError": {
      const statuses = Object.values(BackgroundWorkerStatus) as string[];
      const status = statuses.includes(wire.status ?? "") ? (wire.status as BackgroundWorkerStatus) : BackgroundWorkerStatus.Stopped;
      return new BackgroundWorkerStatusError(status, wire.message);
    }
    case "TypeError":
      return new TypeError(wire.message);
    case "RangeError":
      return new RangeError(wire.message);
    default:
      return new Error(wire.message);
  }
}
