/**
 * The database session of a worker process (SPEC §4, `Spi` and `transaction`): one `pg` client per process,
 * opened once, used only inside `transaction()`. No worker plumbing here: the runtime decides who may connect.
 *
 * The session lives on `globalThis` under `Symbol.for("bgworker.spi")`, because a process may hold two copies
 * of this package (an extension's own `node_modules`, the TypeScript loader) and all must share it.
 */
import type pg from "pg";
import { passwordOf } from "../database/password.js";
import { makeError, show } from "../errors.js";
import type { RawClient } from "./raw-client.js";
import type { ConnectionParams } from "../database/types.js";

/** A PostgreSQL error raised by an SPI call, with the server's SQLSTATE, message and details. */
export class SpiError extends Error {
  override readonly name = "SpiError";
  /**
   * SQLSTATE, e.g. `42P01` (undefined table), `23505` (unique violation), `08006` (connection lost): a
   * database error's stable code is the server's own, as `pg` and postgres.js report it.
   */
  readonly code: string;
  /** The same SQLSTATE, under the name PostgreSQL's documentation gives it. */
  readonly sqlstate: string;
  readonly severity?: string;
  readonly detail?: string;
  readonly hint?: string;
  /** 1-based character position in the statement, when the server reports one. */
  readonly position?: number;
  readonly where?: string;
  readonly schema?: string;
  readonly table?: string;
  readonly column?: string;
  readonly constraint?: string;

  constructor(
    message: string,
    fields: {
      code: string;
      severity?: string | undefined;
      detail?: string | undefined;
      hint?: string | undefined;
      position?: number | undefined;
      where?: string | undefined;
      schema?: string | undefined;
      table?: string | undefined;
      column?: string | undefined;
      constraint?: string | undefined;
    },
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.code = fields.code;
    this.sqlstate = fields.code;
    // Only the fields the server sent, so that printing the error shows no `undefined` noise.
    for (const key of ["severity", "detail", "hint", "position", "where", "schema", "table", "column", "constraint"] as const) {
      if (fields[key] !== undefined) Object.defineProperty(this, key, { value: fields[key], enumerable: true });
    }
  }

  /** From an error of the `pg` driver: a server error keeps all its fields; a network error becomes 08006. */
  static from(error: unknown): SpiError {
    if (error instanceof SpiError) return error;
    if (isDatabaseError(error)) {
      const position = error.position === undefined ? undefined : Number(error.position);
      return new SpiError(
        error.message,
        {
          code: error.code ?? "XX000",
          severity: error.severity,
          detail: error.detail,
          hint: error.hint,
          position: Number.isFinite(position) ? position : undefined,
          where: error.where,
          schema: error.schema,
          table: error.table,
          column: error.column,
          constraint: error.constraint,
        },
        { cause: error },
      );
    }
    const message = error instanceof Error ? error.message : String(error);
    return new SpiError(`connection to the database failed: ${message}`, { code: CONNECTION_FAILURE }, { cause: error });
  }
}

/**
 * A server error from `pg`: from this package's copy of it, or from another one (the session a spare opened
 * ahead of time was made by the runner's copy of the package, which may load its own `pg`).
 */
function isDatabaseError(error: unknown): error is pg.DatabaseError {
  if (driver !== undefined && error instanceof driver.DatabaseError) return true;
  return error instanceof Error && error.constructor.name === "DatabaseError" && typeof (error as { code?: unknown }).code === "string";
}

/** SQLSTATE `connection_failure`: what a lost session reports, as libpq-based clients do. */
const CONNECTION_FAILURE = "08006";

interface Session {
  client: pg.Client | undefined;
  /** Set while connecting, so that a second concurrent connect is refused too. */
  connecting: boolean;
  inTransaction: boolean;
  /** Why the connection broke, surfaced on the next call instead of crashing the process. */
  lost: SpiError | undefined;
  /** Told once when the server ends the session with `pg_terminate_backend()` (SQLSTATE 57P01). */
  onTerminated: (() => void) | undefined;
}

const SESSION = Symbol.for("bgworker.spi");
type ProcessGlobals = { [SESSION]?: Session };

function session(): Session {
  const globals = globalThis as typeof globalThis & ProcessGlobals;
  globals[SESSION] ??= { client: undefined, connecting: false, inTransaction: false, lost: undefined, onTerminated: undefined };
  return globals[SESSION];
}

/**
 * int8 as `bigint` (PostgreSQL's int8 is pgrx's i64; a JS number would lose precision above 2^53, and pg's
 * default is a string). Per client, so other `pg` users in the process keep their own parsers.
 */
const INT8_OID = 20;
const INT8_ARRAY_OID = 1016;
const types = {
  getTypeParser(oid: number, format?: "text" | "binary"): (value: string) => unknown {
    if (oid === INT8_OID && format !== "binary") return (value: string) => BigInt(value);
    if (oid === INT8_ARRAY_OID && format !== "binary") {
      const parseArray = builtinParser(oid, "text");
      return (value: string) => mapDeep(parseArray(value), (v) => (typeof v === "string" ? BigInt(v) : v));
    }
    return builtinParser(oid, format ?? "text");
  },
};

/** The SPI session's parsers, for a session opened ahead of time (spi-preopen.ts). */
export { types as sessionTypes };

/**
 * The `pg` driver, loaded by the first `connectWorkerToSpi()`: a worker that never opens a session never
 * loads it (about 30 modules).
 */
let driver: typeof pg | undefined;

async function loadDriver(): Promise<typeof pg> {
  driver ??= (await import("pg")).default;
  return driver;
}

/** Loads the driver, for a session that a spare opens ahead of time with this session's parsers (`sessionTypes`). */
export async function ensureDriver(): Promise<void> {
  await loadDriver();
}

/** pg's own parser for a type; only called by the driver, so it is loaded by then. */
function builtinParser(oid: number, format: "text" | "binary"): (value: string) => unknown {
  return (driver!.types.getTypeParser as (oid: number, format: "text" | "binary") => (value: string) => unknown)(oid, format);
}

function mapDeep(value: unknown, fn: (v: unknown) => unknown): unknown {
  return Array.isArray(value) ? value.map((v) => mapDeep(v, fn)) : fn(value);
}

/**
 * Where the session's client comes from when it is not a connection over the network: an in-server worker
 * (src/inserver, SPEC §9) installs a factory whose client runs SQL through its backend's own SPI.
 */
const CLIENT_FACTORY = Symbol.for("bgworker.spi-client-factory");

function clientFactory(): ((config: pg.ClientConfig) => pg.Client) | undefined {
  return (globalThis as { [CLIENT_FACTORY]?: (config: pg.ClientConfig) => pg.Client })[CLIENT_FACTORY];
}

/**
 * Opens THE session of this process: `application_name` = the worker's type, so `pg_stat_activity` shows it.
 * `dbname`/`username` default to the served database's. A wrong database or role rejects with a `SpiError`
 * carrying PostgreSQL's message and SQLSTATE (e.g. 3D000). `onTerminated` is called once if the server ends
 * the session as `pg_terminate_backend()` does (57P01 admin_shutdown), so the runtime can treat it as SIGTERM.
 */
export async function connectSpi(
  params: ConnectionParams,
  options: { dbname?: string | null; username?: string | null; applicationName: string; onTerminated?: () => void },
): Promise<void> {
  const state = session();
  if (state.client !== undefined || state.connecting) {
    throw makeError(
      Error,
      "ERR_BGWORKER_SPI_ALREADY_CONNECTED",
      "connectSpi: this process already has its database session; a worker connects once",
      connectSpi,
    );
  }
  state.connecting = true;
  const config: pg.ClientConfig = {
    host: params.host,
    port: params.port,
    user: options.username ?? params.user,
    database: options.dbname ?? params.database,
    password: passwordOf(params),
    application_name: options.applicationName,
    types,
    keepAlive: true,
  };
  let client: pg.Client | undefined;
  try {
    // The session that the spare runner opened ahead of time, when it is for this database and user
    // (spi-preopen.ts); otherwise that session is closed before this one is opened.
    const [{ adoptPreopenedSession }, pgDriver] = await Promise.all([import("./spi-preopen.js"), loadDriver()]);
    const adopted = await adoptPreopenedSession(config, options.applicationName);
    const opened = adopted ?? clientFactory()?.(config) ?? new pgDriver.Client(config);
    client = opened;
    // Never let the driver emit an unhandled 'error' (it would kill the worker): remember it for the next call.
    opened.on("error", (error: Error) => {
      if (state.client !== opened) return;
      state.lost = SpiError.from(error);
      if (state.lost.sqlstate === ADMIN_SHUTDOWN) terminated();
    });
    opened.on("end", () => {
      if (state.client === opened) {
        state.lost ??= new SpiError("connection to the database was lost", { code: CONNECTION_FAILURE });
      }
    });
    if (adopted === undefined) await opened.connect();
  } catch (error) {
    state.connecting = false;
    await client?.end().catch(() => undefined);
    throw SpiError.from(error);
  }
  state.connecting = false;
  state.client = client;
  state.lost = undefined;
  state.onTerminated = options.onTerminated;
}

/**
 * Whether this process has its session, or is opening it: the one record of a worker being connected, which
 * `connectWorkerToSpi()` asks before it connects. A connect that failed leaves it false.
 */
export function spiConnected(): boolean {
  const state = session();
  return state.client !== undefined || state.connecting;
}

/** The server process id of this process's session (`pg_backend_pid()`), or null when not connected. */
export function spiBackendPid(): number | null {
  const pid = (session().client as { processID?: unknown } | undefined)?.processID;
  return typeof pid === "number" && pid > 0 ? pid : null;
}

/** SQLSTATE `admin_shutdown`: `pg_terminate_backend()` (or a server shutting down) ended the session. */
const ADMIN_SHUTDOWN = "57P01";

/** The session was terminated by the server: tell the runtime, once. */
function terminated(): void {
  const state = session();
  const hook = state.onTerminated;
  state.onTerminated = undefined;
  hook?.();
}

/**
 * Runs `fn` between BEGIN and COMMIT and returns its value. If `fn` throws (or COMMIT fails) the transaction
 * is rolled back and the error rethrown, unlike pgrx, which leaves it open. Transactions do not nest.
 */
export async function transaction<R>(fn: () => R | Promise<R>): Promise<R> {
  if (typeof fn !== "function") {
    throw makeError(TypeError, "ERR_BGWORKER_INVALID_VALUE", `transaction: fn ${show(fn)} must be a function`, transaction);
  }
  const state = session();
  if (state.inTransaction) {
    throw makeError(
      Error,
      "ERR_BGWORKER_TRANSACTION_NESTED",
      "transaction: already inside BackgroundWorker.transaction(); transactions do not nest",
      transaction,
    );
  }
  const client = connected("transaction", transaction);
  state.inTransaction = true;
  try {
    await query(client, "BEGIN");
    let result: R;
    try {
      result = await fn();
    } catch (error) {
      await rollback(client);
      throw error;
    }
    await query(client, "COMMIT");
    return result;
  } finally {
    state.inTransaction = false;
  }
}

/** SQL through the session, only inside `transaction()`; SQL errors reject with `SpiError`. */
export const Spi = {
  /** Runs a statement; resolves with the number of rows it affected (or returned). */
  async run(sql: string, params?: unknown[]): Promise<number> {
    const result = await inTransaction("Spi.run", Spi.run, sql, params, "object");
    return result.rowCount ?? 0;
  },
  /** The first column of the first row, or null when there is no row. */
  async getOne<T>(sql: string, params?: unknown[]): Promise<T | null> {
    const result = await inTransaction("Spi.getOne", Spi.getOne, sql, params, "array");
    const row = result.rows[0] as unknown[] | undefined;
    return row === undefined || row.length === 0 ? null : ((row[0] ?? null) as T | null);
  },
  /** Every row, as objects keyed by column name. */
  async select<T>(sql: string, params?: unknown[]): Promise<T[]> {
    const result = await inTransaction("Spi.select", Spi.select, sql, params, "object");
    return result.rows as T[];
  },
};

/** The raw `pg` client of the session, for what `Spi` does not cover (COPY, LISTEN, cursors); typed without `@types/pg`. */
export function spiClient(): RawClient | undefined {
  return session().client;
}

/** Closes the session (the runtime calls it when the worker ends). */
export async function disconnectSpi(): Promise<void> {
  const state = session();
  const client = state.client;
  state.client = undefined;
  state.inTransaction = false;
  state.lost = undefined;
  state.onTerminated = undefined;
  if (client !== undefined) await client.end().catch(() => undefined);
}

function connected(where: string, caller: Function): pg.Client {
  const state = session();
  if (state.lost !== undefined) throw state.lost;
  if (state.client === undefined) {
    throw makeError(
      Error,
      "ERR_BGWORKER_SPI_NOT_CONNECTED",
      `${where}: not connected to a database (call BackgroundWorker.connectWorkerToSpi() first)`,
      caller,
    );
  }
  return state.client;
}

async function inTransaction(
  where: string,
  caller: Function,
  sql: string,
  params: unknown[] | undefined,
  rowMode: "array" | "object",
): Promise<pg.QueryResult> {
  if (typeof sql !== "string") {
    throw makeError(TypeError, "ERR_BGWORKER_INVALID_VALUE", `${where}: sql ${show(sql)} must be a string`, caller);
  }
  if (params !== undefined && !Array.isArray(params)) {
    throw makeError(TypeError, "ERR_BGWORKER_INVALID_VALUE", `${where}: params ${show(params)} must be an array or undefined`, caller);
  }
  if (!session().inTransaction) {
    throw makeError(Error, "ERR_BGWORKER_NOT_IN_TRANSACTION", `${where}: not inside BackgroundWorker.transaction()`, caller);
  }
  const config: QueryConfig = {
    text: sql,
    ...(params === undefined ? {} : { values: params }),
    ...(rowMode === "array" ? { rowMode: "array" } : {}),
  };
  const result = await query(connected(where, caller), config);
  // Several statements in one string (no params) give one result each: the last one is the answer.
  return Array.isArray(result) ? (result[result.length - 1] as pg.QueryResult) : result;
}

/** pg's QueryConfig plus `rowMode`, which its types keep on a separate overload. */
type QueryConfig = pg.QueryConfig & { rowMode?: "array" };

async function query(client: pg.Client, config: string | QueryConfig): Promise<pg.QueryResult | pg.QueryResult[]> {
  const state = session();
  if (state.lost !== undefined) throw state.lost;
  try {
    return (await client.query(config as pg.QueryConfig)) as pg.QueryResult | pg.QueryResult[];
  } catch (error) {
    const failure = SpiError.from(state.lost ?? error);
    // Terminated in the middle of a statement: the statement fails with 57P01, and the worker is told too.
    if (failure.sqlstate === ADMIN_SHUTDOWN) {
      state.lost ??= failure;
      terminated();
    }
    throw failure;
  }
}

async function rollback(client: pg.Client): Promise<void> {
  if (session().lost !== undefined) return; // the server dropped the transaction with the connection
  try {
    await client.query("ROLLBACK");
  } catch {
    // the original error matters more; a broken connection is reported on the next call
  }
}
