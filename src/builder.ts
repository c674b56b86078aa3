/**
 * `BackgroundWorkerBuilder`: registers a worker, as pgrx's builder over PostgreSQL's `BackgroundWorker`
 * struct. Each setter validates its own field at once; `load()`/`loadDynamic()` check the rules that span
 * fields, then hand a frozen `WorkerDefinition` to the postmaster.
 */
import { currentInit, currentLauncher } from "./context.js";
import {
  BgWorkerStartTime,
  MAX_PID,
  encodeDatum,
  START_TIME_NAMES,
  WORKER_SCOPES,
  type Datum,
  type WorkerDefinition,
  type WorkerScope,
} from "./definition.js";
import { defaultCode, makeError, show, type ErrorCode } from "./errors.js";
import type { DynamicBackgroundWorker } from "./handle.js";
import type { Launcher } from "./launcher.js";

/** PostgreSQL's BGW_MAXLEN (96) less the terminating NUL. */
export const MAX_NAME_BYTES = 95;
/** PostgreSQL's BGW_EXTRALEN. */
export const MAX_EXTRA_BYTES = 128;
/** One day, PostgreSQL's limit for `bgw_restart_time`, in milliseconds. */
export const MAX_RESTART_TIME_MS = 86_400_000;
const MIN_DATUM_BIGINT = -(2n ** 63n);
const MAX_DATUM_BIGINT = 2n ** 64n - 1n;

/** The field each public method sets; its errors carry it, so the CLI can name its flag instead. */
const FIELD_OF: Readonly<Record<string, BuilderField>> = {
  BackgroundWorkerBuilder: "name",
  new: "name",
  setType: "type",
  setLibrary: "library",
  setFunction: "function",
  setArgument: "argument",
  setExtra: "extra",
  setStartTime: "startTime",
  setRestartTime: "restartTime",
  setNotifyPid: "notifyPid",
  setScope: "scope",
  enableShmemAccess: "startup",
};

export type BuilderField =
  | "name"
  | "type"
  | "library"
  | "function"
  | "argument"
  | "extra"
  | "startTime"
  | "restartTime"
  | "notifyPid"
  | "scope"
  | "startup";

/** The field a builder error is about (undefined for rules that span fields). */
export function fieldOf(error: unknown): BuilderField | undefined {
  const field = typeof error === "object" && error !== null ? (error as { field?: unknown }).field : undefined;
  return typeof field === "string" && Object.values(FIELD_OF).includes(field as BuilderField) ? (field as BuilderField) : undefined;
}

/** Throws a coded error whose stack starts at the user's call, naming the field the method sets. */
function fail(
  Ctor: new (message: string) => Error,
  message: string,
  caller: Function,
  code: ErrorCode = defaultCode(Ctor),
): never {
  const error = makeError(Ctor, code, message, caller);
  const field = FIELD_OF[caller.name];
  if (field !== undefined) Object.defineProperty(error, "field", { value: field, enumerable: true });
  throw error;
}

interface Broken {
  readonly Ctor: typeof TypeError | typeof RangeError;
  readonly code: ErrorCode;
  readonly rule: string;
}

/**
 * The rule a short string field breaks, or undefined: a wrong kind (not a string, a NUL inside) is a TypeError;
 * a length outside 1..95 bytes is a RangeError, as node's ERR_OUT_OF_RANGE.
 */
function shortStringRule(value: unknown): Broken | undefined {
  if (typeof value !== "string") return { Ctor: TypeError, code: "ERR_BGWORKER_INVALID_VALUE", rule: "must be a string" };
  if (value.length === 0) return { Ctor: RangeError, code: "ERR_BGWORKER_VALUE_OUT_OF_RANGE", rule: "must not be empty" };
  if (value.includes("\0")) return { Ctor: TypeError, code: "ERR_BGWORKER_INVALID_VALUE", rule: "must not contain a NUL character" };
  if (Buffer.byteLength(value) > MAX_NAME_BYTES) {
    return { Ctor: RangeError, code: "ERR_BGWORKER_NAME_TOO_LONG", rule: `must be at most ${MAX_NAME_BYTES} UTF-8 bytes` };
  }
  return undefined;
}

/** Checks a short string field (name, type, function), failing with its field, value and rule. */
function checkShortString(where: string, field: string, value: unknown, caller: Function): void {
  const broken = shortStringRule(value);
  if (broken !== undefined) fail(broken.Ctor, `${where}: ${field} ${show(value)} ${broken.rule}`, caller, broken.code);
}

let definitionOfBuilder: (builder: BackgroundWorkerBuilder, notifyPid: number) => WorkerDefinition;
let launchOfBuilder: (
  builder: BackgroundWorkerBuilder,
  launcher: Launcher | undefined,
  caller: Function,
) => Promise<DynamicBackgroundWorker>;

/**
 * The validated definition a builder makes (its cross-field rules applied), with `notifyPid` unless the
 * builder set one: for the control socket's rebuilt definitions and the CLI's checks before connecting.
 */
export function definitionOf(builder: BackgroundWorkerBuilder, notifyPid = 0): WorkerDefinition {
  return definitionOfBuilder(builder, notifyPid);
}

/** `loadDynamic()` through a given launcher (`PostmasterClient#loadDynamic(builder)`). */
export function launchWith(builder: BackgroundWorkerBuilder, launcher: Launcher | undefined, caller: Function): Promise<DynamicBackgroundWorker> {
  return launchOfBuilder(builder, launcher, caller);
}

export class BackgroundWorkerBuilder {
  #name: string;
  #type: string | undefined;
  #library: string | undefined;
  #function: string | undefined;
  #startTime = BgWorkerStartTime.PostmasterStart;
  #restartTimeMs: number | null = null;
  #argument: Datum = null;
  #extra: Uint8Array = new Uint8Array(0);
  #spi = false;
  #shmem = false;
  #shmemStartup: (() => void) | undefined;
  #notifyPid: number | undefined;
  #scope: WorkerScope = "host";

  static {
    definitionOfBuilder = (builder, notifyPid) => {
      if (builder.#library === undefined) {
        fail(TypeError, `launch: library of background worker ${show(builder.#name)} is not set: call setLibrary(module)`, definitionOf, "ERR_BGWORKER_MISSING_FIELD");
      }
      return builder.#definition(builder.#library, builder.#notifyPid ?? notifyPid, definitionOf, "launch");
    };
    launchOfBuilder = (builder, launcher, caller) => builder.#launch(launcher, caller);
  }

  /** A worker named `name`; its type defaults to the name. */
  constructor(name: string) {
    checkShortString("BackgroundWorkerBuilder", "name", name, new.target);
    this.#name = name;
  }

  /** Same as `new BackgroundWorkerBuilder(name)`, pgrx's spelling. */
  static new(name: string): BackgroundWorkerBuilder {
    checkShortString("BackgroundWorkerBuilder.new", "name", name, BackgroundWorkerBuilder.new);
    return new BackgroundWorkerBuilder(name);
  }

  /** The worker's type: what logs, status and `pg_stat_activity` show. Defaults to the name. */
  setType(type: string): this {
    checkShortString("setType", "type", type, this.setType);
    this.#type = type;
    return this;
  }

  /**
   * Attach the worker to shared memory. `startup` runs in the postmaster after the segment is created and
   * after every crash-restart, to initialise it.
   */
  enableShmemAccess(startup?: () => void): this {
    if (startup !== undefined && typeof startup !== "function") {
      fail(TypeError, `enableShmemAccess: startup ${show(startup)} must be a function or undefined`, this.enableShmemAccess);
    }
    this.#shmem = true;
    this.#shmemStartup = startup;
    return this;
  }

  /** The worker will open a database session. Moves the start time to RecoveryFinished, as pgrx does. */
  enableSpiAccess(): this {
    this.#spi = true;
    this.#startTime = BgWorkerStartTime.RecoveryFinished;
    return this;
  }

  setStartTime(startTime: BgWorkerStartTime): this {
    if (typeof startTime !== "number" || !Object.prototype.hasOwnProperty.call(START_TIME_NAMES, startTime)) {
      fail(
        TypeError,
        `setStartTime: start time ${show(startTime)} must be BgWorkerStartTime.PostmasterStart, ConsistentState or RecoveryFinished`,
        this.setStartTime,
      );
    }
    this.#startTime = startTime;
    return this;
  }

  /**
   * Milliseconds to wait before restarting after exit code 1 or a crash; `null` never restarts. A value that
   * is not a number is a TypeError; a number that is not an integer from 0 to 86,400,000 (1.5, NaN,
   * Infinity, -1) is a RangeError.
   */
  setRestartTime(ms: number | null): this {
    if (ms !== null) {
      if (typeof ms !== "number") {
        fail(TypeError, `setRestartTime: restart time ${show(ms)} must be null or an integer number of milliseconds`, this.setRestartTime);
      }
      if (!Number.isInteger(ms)) {
        fail(
          RangeError,
          `setRestartTime: restart time ${ms} must be an integer number of milliseconds (from 0 to ${MAX_RESTART_TIME_MS}), or null`,
          this.setRestartTime,
        );
      }
      if (ms < 0 || ms > MAX_RESTART_TIME_MS) {
        fail(RangeError, `setRestartTime: restart time ${ms} must be from 0 to ${MAX_RESTART_TIME_MS} ms (one day), or null`, this.setRestartTime);
      }
    }
    this.#restartTimeMs = ms;
    return this;
  }

  /** The module holding the worker's function: a path (from the postmaster's working directory) or a package. */
  setLibrary(module: string): this {
    if (typeof module !== "string") fail(TypeError, `setLibrary: library ${show(module)} must be a module specifier (a string)`, this.setLibrary);
    if (module.length === 0) fail(RangeError, `setLibrary: library ${show(module)} must be a non-empty module specifier`, this.setLibrary);
    if (module.includes("\0")) fail(TypeError, `setLibrary: library ${show(module)} must not contain a NUL character`, this.setLibrary);
    this.#library = module;
    return this;
  }

  /** The exported function the worker runs, called as `await fn(argument)`. */
  setFunction(name: string): this {
    checkShortString("setFunction", "function", name, this.setFunction);
    this.#function = name;
    return this;
  }

  /**
   * The by-value argument the worker's function receives, with the same JavaScript type. Strings and
   * objects are refused: the worker is another process.
   */
  setArgument(arg?: Datum): this {
    const value = arg === undefined ? null : arg;
    switch (typeof value) {
      case "number":
        if (!Number.isFinite(value)) fail(RangeError, `setArgument: argument ${value} must be a finite number`, this.setArgument);
        break;
      case "bigint":
        if (value < MIN_DATUM_BIGINT || value > MAX_DATUM_BIGINT) {
          fail(RangeError, `setArgument: argument ${value}n does not fit in a 64-bit Datum`, this.setArgument);
        }
        break;
      case "boolean":
        break;
      default:
        if (value !== null) {
          fail(
            TypeError,
            `setArgument: argument ${show(value)} is not a by-value Datum (number, bigint, boolean or null): a worker is ` +
              `another process, so pass a small value, use setExtra() for up to ${MAX_EXTRA_BYTES} bytes, or an index into shared memory`,
            this.setArgument,
          );
        }
    }
    this.#argument = value;
    return this;
  }

  /** Up to 128 bytes the worker reads with `getExtra()`/`getExtraBytes()` (PostgreSQL's `bgw_extra`). */
  setExtra(extra: string | Uint8Array): this {
    let bytes: Uint8Array;
    if (typeof extra === "string") bytes = new Uint8Array(Buffer.from(extra, "utf8"));
    else if (extra instanceof Uint8Array) bytes = new Uint8Array(extra);
    else fail(TypeError, `setExtra: extra ${show(extra)} must be a string or a Uint8Array`, this.setExtra);
    if (bytes.byteLength > MAX_EXTRA_BYTES) {
      fail(RangeError, `setExtra: extra of ${bytes.byteLength} bytes must be at most ${MAX_EXTRA_BYTES} bytes`, this.setExtra);
    }
    this.#extra = bytes;
    return this;
  }

  /** The process told when a dynamic worker starts and stops; 0 makes its handle untracked. */
  setNotifyPid(pid: number): this {
    if (typeof pid !== "number") {
      fail(TypeError, `setNotifyPid: notify pid ${show(pid)} must be a process id (an integer from 0 to ${MAX_PID})`, this.setNotifyPid);
    }
    if (!Number.isInteger(pid) || pid < 0 || pid > MAX_PID) {
      fail(RangeError, `setNotifyPid: notify pid ${show(pid)} must be a process id (an integer from 0 to ${MAX_PID})`, this.setNotifyPid);
    }
    this.#notifyPid = pid;
    return this;
  }

  /**
   * Where the worker runs when postmasters form a cluster (SPEC §10, `--cluster`): `"host"` (the default)
   * on every postmaster, as before; `"cluster"` exactly once across the cluster, on the node that holds its
   * lease, moved to another node when that one stops, dies, freezes or is cut off. Cluster scope is for
   * static workers; a postmaster that is not in a cluster runs a cluster-scoped worker as a host-scoped one.
   */
  setScope(scope: WorkerScope): this {
    if (typeof scope !== "string" || !(WORKER_SCOPES as readonly string[]).includes(scope)) {
      fail(TypeError, `setScope: scope ${show(scope)} must be "host" or "cluster"`, this.setScope);
    }
    this.#scope = scope;
    return this;
  }

  /** Registers a static worker. Only inside an extension's `_PG_init()`. */
  load(): void {
    const init = currentInit();
    if (init === undefined) {
      fail(
        Error,
        `load: static background worker ${show(this.#name)} can only be registered inside an extension's _PG_init(); ` +
          `use loadDynamic() to start a worker at run time`,
        this.load,
        "ERR_BGWORKER_NOT_IN_PG_INIT",
      );
    }
    if (this.#notifyPid !== undefined && this.#notifyPid !== 0) {
      fail(
        TypeError,
        `load: notify pid ${this.#notifyPid} of background worker ${show(this.#name)} is refused: only dynamic background workers can request notification`,
        this.load,
        "ERR_BGWORKER_NOTIFY_PID",
      );
    }
    const definition = this.#definition(this.#library ?? init.extension, 0, this.load);
    init.registerStatic(definition, this.#shmemStartup);
  }

  /**
   * Starts a dynamic worker now and returns its handle. Rejects with `NoFreeWorkerSlotError` when every
   * slot is taken. The notify pid defaults to this process.
   */
  async loadDynamic(): Promise<DynamicBackgroundWorker> {
    return this.#launch(currentLauncher(), this.loadDynamic);
  }

  #launch(launcher: Launcher | undefined, caller: Function): Promise<DynamicBackgroundWorker> {
    if (this.#library === undefined) {
      fail(TypeError, `loadDynamic: library of background worker ${show(this.#name)} is not set: call setLibrary(module)`, caller, "ERR_BGWORKER_MISSING_FIELD");
    }
    const definition = this.#definition(this.#library, this.#notifyPid ?? process.pid, caller);
    if (launcher === undefined) {
      fail(
        Error,
        `loadDynamic: background worker ${show(this.#name)} has no postmaster to run it: call connect() first ` +
          `(inside the postmaster and its workers the connection is implicit)`,
        caller,
        "ERR_BGWORKER_NO_POSTMASTER",
      );
    }
    return launcher.launch(definition, this.#shmemStartup);
  }

  #definition(library: string, notifyPid: number, caller: Function, where: string = caller.name): WorkerDefinition {
    if (this.#function === undefined) {
      fail(TypeError, `${where}: function of background worker ${show(this.#name)} is not set: call setFunction(name)`, caller, "ERR_BGWORKER_MISSING_FIELD");
    }
    if (this.#spi && this.#startTime === BgWorkerStartTime.PostmasterStart) {
      fail(
        TypeError,
        `${where}: background worker ${show(this.#name)} cannot request database access with start time PostmasterStart: ` +
          `the database may not be consistent yet; use ConsistentState or RecoveryFinished`,
        caller,
      );
    }
    return Object.freeze({
      name: this.#name,
      type: this.#type ?? this.#name,
      library,
      function: this.#function,
      startTime: this.#startTime,
      restartTimeMs: this.#restartTimeMs,
      argument: Object.freeze(encodeDatum(this.#argument)),
      extra: Buffer.from(this.#extra).toString("base64"),
      spi: this.#spi,
      shmem: this.#shmem,
      notifyPid,
      scope: this.#scope,
    });
  }
}
