/**
 * `BackgroundWorker`: what a worker's code uses about itself (registration data, signals, latch,
 * postmaster liveness, database session). It reads the worker role that the runner installed on this
 * process; anywhere else every call throws.
 */
import { workerRole } from "../context.js";
import { decodeDatum, extraBytes, type Datum } from "../definition.js";
import { fail } from "../errors.js";
import { signalsOf, type SignalWakeFlags, type WorkerSignal } from "./signals.js";
import { connectSpi, spiBackendPid, spiClient, spiConnected, transaction as spiTransaction } from "./spi.js";
import type { WorkerRole } from "./worker-role.js";

function worker(caller: Function): WorkerRole {
  const role = workerRole();
  if (role === undefined) fail(Error, `BackgroundWorker.${caller.name}: not in a background worker`, caller, "ERR_BGWORKER_NOT_IN_WORKER");
  return role;
}

/**
 * Records a cluster-scoped worker's database session under its lease's generation (SPEC §10), before its code
 * can use it: a node that takes the lease over terminates every session recorded for the old generation
 * before it starts the new one, so no transaction of this worker commits after that. A token that is stale
 * already ends the worker: it must not touch the database.
 */
async function enrollUnderLease(role: WorkerRole, cluster: { readonly name: string; readonly fencingToken: string }): Promise<void> {
  const { name } = role.start.definition;
  // Loaded here only: a worker outside a cluster never pays for the cluster's SQL.
  const { enrollSession } = await import("../cluster/lease-sql.js");
  const statement = enrollSession(cluster.name, name, BigInt(cluster.fencingToken));
  let enrolled: boolean;
  try {
    const result = await spiClient()!.query(statement.text, [...statement.values]);
    enrolled = result.rows.length === 1;
  } catch (error) {
    role.fatal(
      `background worker "${name}": cannot record its database session under cluster "${cluster.name}"'s lease: ` +
        `${error instanceof Error ? error.message : String(error)} (a cluster-scoped worker connects to the served database, where the cluster's schema is)`,
    );
  }
  if (!enrolled) {
    role.fatal(`background worker "${name}": fencing token ${cluster.fencingToken} is stale: the cluster lease has moved on, so this worker must not use the database`);
  }
}

function received(signal: WorkerSignal, caller: () => boolean): boolean {
  return worker(caller).take(signal);
}

export const BackgroundWorker = Object.freeze({
  /** The name given to `BackgroundWorkerBuilder`. */
  getName(): string {
    return worker(BackgroundWorker.getName).start.definition.name;
  },

  /** The type: what logs, status and `pg_stat_activity` show. */
  getType(): string {
    return worker(BackgroundWorker.getType).start.definition.type;
  },

  /** `setExtra()`'s data as UTF-8 text. */
  getExtra(): string {
    return Buffer.from(extraBytes(worker(BackgroundWorker.getExtra).start.definition)).toString("utf8");
  },

  /** `setExtra()`'s data as bytes. */
  getExtraBytes(): Uint8Array {
    return extraBytes(worker(BackgroundWorker.getExtraBytes).start.definition);
  },

  /** The argument given to `setArgument()`, with its JavaScript type; also passed to the function. */
  getArgument(): Datum {
    return decodeDatum(worker(BackgroundWorker.getArgument).start.definition.argument);
  },

  /**
   * From now on each selected signal sets its flag and the latch instead of its default action (SIGTERM
   * ends the worker; SIGHUP and SIGINT are ignored).
   */
  attachSignalHandlers(flags: SignalWakeFlags): void {
    worker(BackgroundWorker.attachSignalHandlers).attach(signalsOf(flags));
  },

  sighupReceived(): boolean {
    return received("SIGHUP", BackgroundWorker.sighupReceived);
  },

  sigtermReceived(): boolean {
    return received("SIGTERM", BackgroundWorker.sigtermReceived);
  },

  sigintReceived(): boolean {
    return received("SIGINT", BackgroundWorker.sigintReceived);
  },

  sigchldReceived(): boolean {
    return received("SIGCHLD", BackgroundWorker.sigchldReceived);
  },

  /**
   * Waits until the latch is set, `timeoutMs` passes (null or omitted: no timeout), termination is
   * requested or the postmaster dies, and resets the latch. Resolves false once termination was requested
   * or the postmaster is gone, and keeps resolving false after that. It may resolve true for a wake-up that
   * is not yours: loop and check your own condition.
   */
  async waitLatch(timeoutMs?: number | null): Promise<boolean> {
    const role = worker(BackgroundWorker.waitLatch);
    const timeout = timeoutMs ?? null;
    if (timeout !== null && (typeof timeout !== "number" || !Number.isFinite(timeout) || timeout < 0)) {
      fail(TypeError, `waitLatch: timeout ${String(timeout)} must be a non-negative number of milliseconds or null`, BackgroundWorker.waitLatch);
    }
    const reason = await role.latch.wait(timeout);
    return reason === "latch" || reason === "timeout";
  },

  /** Sets this worker's latch, or (with `pid`) another worker's, waking its `waitLatch`. */
  setLatch(pid?: number): void {
    const role = worker(BackgroundWorker.setLatch);
    if (pid === undefined || pid === process.pid) {
      role.latch.set();
      return;
    }
    if (typeof pid !== "number" || !Number.isInteger(pid) || pid <= 0) {
      fail(TypeError, `setLatch: pid ${String(pid)} must be a positive integer process id`, BackgroundWorker.setLatch);
    }
    try {
      process.kill(pid, "SIGURG");
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      fail(Error, `setLatch: cannot set the latch of pid ${pid}: ${code === "ESRCH" ? "no such process" : String(code)}`, BackgroundWorker.setLatch);
    }
  },

  /**
   * The fencing token of a cluster-scoped worker (SPEC §10): the generation of the lease this process runs
   * under, strictly increasing for the worker across the cluster. Pass it to what the worker talks to other
   * than the database (an API, a queue, a file store) so that those can refuse a stale holder; the
   * database fences by itself. Throws ERR_BGWORKER_NOT_CLUSTER_SCOPED in a worker that runs under no lease.
   */
  getFencingToken(): bigint {
    const role = worker(BackgroundWorker.getFencingToken);
    const { cluster, definition } = role.start;
    if (cluster === null) {
      fail(
        Error,
        `getFencingToken: background worker "${definition.name}" runs under no cluster lease: ` +
          (definition.scope === "cluster" ? "its postmaster is not in a cluster (--cluster)" : 'it is not cluster-scoped (setScope("cluster"))'),
        BackgroundWorker.getFencingToken,
        "ERR_BGWORKER_NOT_CLUSTER_SCOPED",
      );
    }
    return BigInt(cluster.fencingToken);
  },

  /** False once the postmaster is gone (noticed at once through the IPC channel, not by polling). */
  postmasterIsAlive(): boolean {
    return worker(BackgroundWorker.postmasterIsAlive).postmasterAlive();
  },

  /**
   * Opens this worker's database session, once. Needs `enableSpiAccess()`. `dbname` and `username` default
   * to the postmaster's. A database or role that does not exist ends the worker, as PostgreSQL's FATAL.
   */
  async connectWorkerToSpi(dbname?: string | null, username?: string | null): Promise<void> {
    const role = worker(BackgroundWorker.connectWorkerToSpi);
    const { definition, database } = role.start;
    if (!definition.spi) {
      fail(Error, `connectWorkerToSpi: background worker "${definition.name}" was not registered with enableSpiAccess()`, BackgroundWorker.connectWorkerToSpi, "ERR_BGWORKER_SPI_NOT_ENABLED");
    }
    // The session (spi.ts) is the one record of being connected, or connecting: a second call, even one made
    // while the first still waits for the server, is refused here.
    if (spiConnected()) {
      fail(Error, `connectWorkerToSpi: background worker "${definition.name}" is already connected; a worker connects once`, BackgroundWorker.connectWorkerToSpi, "ERR_BGWORKER_SPI_ALREADY_CONNECTED");
    }
    for (const [field, value] of [["dbname", dbname], ["username", username]] as const) {
      if (value !== undefined && value !== null && (typeof value !== "string" || value.length === 0)) {
        fail(TypeError, `connectWorkerToSpi: ${field} ${String(value)} must be a non-empty string or null`, BackgroundWorker.connectWorkerToSpi);
      }
    }
    if (database === null) return role.fatal(`background worker "${definition.name}": no database is served`);
    try {
      await connectSpi(database, {
        dbname: dbname ?? null,
        username: username ?? null,
        applicationName: definition.type,
        // pg_terminate_backend() on this session is SIGTERM to the worker (SPEC §6). Attached, the flag and
        // the latch are set now, before the statement that was running rejects, so a worker that catches that
        // rejection already sees sigtermReceived(). Otherwise the real signal takes the runtime's one default
        // path: FATAL and exit 1.
        onTerminated: () => {
          if (!role.deliver("SIGTERM")) process.kill(process.pid, "SIGTERM");
        },
      });
    } catch (error) {
      role.fatal(error instanceof Error ? error.message : String(error));
    }
    if (role.start.cluster !== null) await enrollUnderLease(role, role.start.cluster);
    const backendPid = spiBackendPid();
    if (backendPid !== null) role.sessionOpened(backendPid);
  },

  /** Runs `fn` in a transaction of this worker's session: COMMIT and its value, or ROLLBACK and rethrow. */
  async transaction<R>(fn: () => R | Promise<R>): Promise<R> {
    worker(BackgroundWorker.transaction);
    return spiTransaction(fn);
  },
});
