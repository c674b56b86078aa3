/**
 * Errors of the public API. Every one carries a stable `code` (ERR_BGWORKER_*, listed in docs/errors.md)
 * beside its one-line message naming field, value and rule; they are made by `makeError`, so the code, the
 * class and the stack boundary are chosen in one place (as postgres.js's errors.js does).
 */

/** Statuses of a dynamic worker, as PostgreSQL's `BgwHandleStatus` plus pgrx's `Untracked`. */
export enum BackgroundWorkerStatus {
  Started = "Started",
  NotYetStarted = "NotYetStarted",
  Stopped = "Stopped",
  PostmasterDied = "PostmasterDied",
  Untracked = "Untracked",
}

/** The stable codes; docs/errors.md says what each means. */
export const ERROR_CODES = [
  "ERR_BGWORKER_INVALID_VALUE",
  "ERR_BGWORKER_NAME_TOO_LONG",
  "ERR_BGWORKER_VALUE_OUT_OF_RANGE",
  "ERR_BGWORKER_MISSING_FIELD",
  "ERR_BGWORKER_INVALID_DEFINITION",
  "ERR_BGWORKER_INVALID_HANDLE",
  "ERR_BGWORKER_INVALID_OPTION",
  "ERR_BGWORKER_NOT_IN_PG_INIT",
  "ERR_BGWORKER_NOT_IN_WORKER",
  "ERR_BGWORKER_NO_POSTMASTER",
  "ERR_BGWORKER_NOTIFY_PID",
  "ERR_BGWORKER_STARTUP_HOOK",
  "ERR_BGWORKER_NO_DATABASE",
  "ERR_BGWORKER_NO_FREE_SLOT",
  "ERR_BGWORKER_SHUTTING_DOWN",
  "ERR_BGWORKER_NO_SUCH_WORKER",
  "ERR_BGWORKER_WORKER_STATUS",
  "ERR_BGWORKER_POSTMASTER_STATE",
  "ERR_BGWORKER_CONNECTION_LOST",
  "ERR_BGWORKER_PROTOCOL",
  "ERR_BGWORKER_SOCKET_IN_USE",
  "ERR_BGWORKER_CONTROL_SOCKET",
  "ERR_BGWORKER_EXTENSION",
  "ERR_BGWORKER_NOT_IN_SERVER",
  "ERR_BGWORKER_SHMEM_STARTUP",
  "ERR_BGWORKER_SHMEM_ADDON",
  "ERR_BGWORKER_NO_PG_BINARIES",
  "ERR_BGWORKER_PGDATA_UNREACHABLE",
  "ERR_BGWORKER_PGDATA_INVALID",
  "ERR_BGWORKER_PGDATA_IN_USE",
  "ERR_BGWORKER_DATABASE_START",
  "ERR_BGWORKER_SERVER_PROGRAM",
  "ERR_BGWORKER_NO_SERVER_USER",
  "ERR_BGWORKER_NO_FREE_PORT",
  "ERR_BGWORKER_NO_PASSWORD",
  "ERR_BGWORKER_SOCKET_PATH_TOO_LONG",
  "ERR_BGWORKER_LATCH_BUSY",
  "ERR_BGWORKER_SPI_NOT_ENABLED",
  "ERR_BGWORKER_SPI_NOT_CONNECTED",
  "ERR_BGWORKER_SPI_ALREADY_CONNECTED",
  "ERR_BGWORKER_NOT_IN_TRANSACTION",
  "ERR_BGWORKER_TRANSACTION_NESTED",
  "ERR_BGWORKER_CLUSTER_POOLER",
  "ERR_BGWORKER_CLUSTER_NODE_ID_IN_USE",
  "ERR_BGWORKER_CLUSTER_SCOPE",
  "ERR_BGWORKER_NOT_CLUSTER_SCOPED",
  "ERR_BGWORKER_FENCED",
  "ERR_BGWORKER_FAILED",
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** An error of this package: a built-in class (TypeError, RangeError, Error) or one of ours, with its code. */
export type CodedError<E extends Error = Error> = E & { readonly code: ErrorCode };

/** A handle operation that needs a status the worker does not have (e.g. `pid()` of a stopped worker). */
export class BackgroundWorkerStatusError extends Error {
  override readonly name = "BackgroundWorkerStatusError";
  readonly code: ErrorCode = "ERR_BGWORKER_WORKER_STATUS";
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
  readonly code: ErrorCode = "ERR_BGWORKER_NO_FREE_SLOT";
}

/**
 * Makes an error of class `Ctor` with `code` and `message`. With `caller`, the stack starts at the caller of
 * that function (the public method), so a user's stack trace points at their own line rather than at
 * validation internals. `caller` is typed `Function`, as `Error.captureStackTrace` takes it, because any
 * function, method or accessor a user calls can be that boundary; every `caller` parameter in the package
 * is such a boundary, passed down to here.
 */
export function makeError<E extends Error>(
  Ctor: new (message: string) => E,
  code: ErrorCode,
  message: string,
  caller?: Function,
): CodedError<E> {
  const error = new Ctor(message);
  if (!Object.prototype.hasOwnProperty.call(error, "code") || (error as { code?: unknown }).code !== code) {
    Object.defineProperty(error, "code", { value: code, enumerable: true, configurable: true, writable: false });
  }
  if (caller !== undefined) Error.captureStackTrace(error, caller);
  return error as CodedError<E>;
}

/** The code an error gets when its maker names none: by its class, the broad kinds of bad input. */
export function defaultCode(Ctor: new (message: string) => Error): ErrorCode {
  if (Ctor === RangeError) return "ERR_BGWORKER_VALUE_OUT_OF_RANGE";
  if (Ctor === TypeError) return "ERR_BGWORKER_INVALID_VALUE";
  return "ERR_BGWORKER_FAILED";
}

/** Throws `makeError(...)`; the code defaults by class (TypeError: invalid value, RangeError: out of range). */
export function fail(
  Ctor: new (message: string) => Error,
  message: string,
  caller: Function,
  code: ErrorCode = defaultCode(Ctor),
): never {
  throw makeError(Ctor, code, message, caller);
}

/** The code of an error of this package, if it has one. */
export function codeOf(error: unknown): ErrorCode | undefined {
  const code = typeof error === "object" && error !== null ? (error as { code?: unknown }).code : undefined;
  return typeof code === "string" && (ERROR_CODES as readonly string[]).includes(code) ? (code as ErrorCode) : undefined;
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

/** An error as it crosses a process boundary (IPC or the control socket). */
export interface WireError {
  readonly name: string;
  readonly message: string;
  readonly status?: string;
  readonly code?: string;
}

export function errorToWire(error: unknown): WireError {
  if (!(error instanceof Error)) return { name: "Error", message: String(error) };
  const code = codeOf(error);
  return {
    name: error.name,
    message: error.message,
    ...(error instanceof BackgroundWorkerStatusError ? { status: error.status } : {}),
    ...(code === undefined ? {} : { code }),
  };
}

/**
 * Re-creates a well-formed wire error with its class (protocol.ts `errorFromWire` reads replies and calls
 * this), so `instanceof NoFreeWorkerSlotError` and friends hold for the caller
 * and its `code` is kept. The request channel then gives it the caller's stack.
 */
export function errorOfKnownClass(wire: WireError): Error {
  const code = (ERROR_CODES as readonly string[]).includes(wire.code ?? "") ? (wire.code as ErrorCode) : undefined;
  switch (wire.name) {
    case "NoFreeWorkerSlotError":
      return new NoFreeWorkerSlotError(wire.message);
    case "BackgroundWorkerStatusError": {
      const statuses = Object.values(BackgroundWorkerStatus) as string[];
      const status = statuses.includes(wire.status ?? "") ? (wire.status as BackgroundWorkerStatus) : BackgroundWorkerStatus.Stopped;
      return new BackgroundWorkerStatusError(status, wire.message);
    }
  }
  const Ctor = wire.name === "TypeError" ? TypeError : wire.name === "RangeError" ? RangeError : Error;
  return code === undefined ? new Ctor(wire.message) : makeError(Ctor, code, wire.message);
}
