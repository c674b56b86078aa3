/** A cluster that the postmaster runs itself: created on first run, started, watched, stopped after the workers. */
import { chmod, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { dirname, isAbsolute, join, relative, resolve } from "node:path";
import { makeError } from "../errors.js";
import type { Logger } from "../log.js";
import { dampingDelay, DEFAULT_RESTART_BACKOFF, nextFastFailures, type RestartBackoff } from "../postmaster/rules.js";
import { Cluster, SERVER_LOG, SUPERUSER } from "./cluster.js";
import { PhaseMonitor } from "./monitor.js";
import { describeBinaries } from "./binaries.js";
import { embeddedPgdata } from "./location.js";
import { processAlive, runAs, serverOwner, type ServerOwner } from "./owner.js";
import { choosePort } from "./ports.js";

import type { ConnectionParams, PhaseListener, ServedDatabase } from "./types.js";

/** Beside the cluster's own files: which postmaster started the server, so a successor can clean up after it. */
const OWNER_FILE = "bgworker.owner";

/** How often the server's pid is checked while the database cannot be reached (the monitor reports loss at once). */
const SUPERVISE_MS = 500;

export interface ManagedOptions {
  readonly cwd: string;
  readonly logger: Logger;
  readonly embedded: boolean;
  /** Damping of server restarts after it exits unasked: the same rules as workers' restart storms. */
  readonly restartBackoff?: RestartBackoff;
}

export class ManagedDatabase implements ServedDatabase {
  private pgdata: string;
  /** Kept outside the project because the server's OS user cannot reach it (see location.ts). */
  private relocated = false;
  private cluster: Cluster | undefined;
  private port: number | undefined;
  private startedHere = false;
  private monitor: PhaseMonitor | undefined;
  /** Supervision: the server is started again when it exits without being asked (SPEC §6). */
  private stopping = false;
  private supervisor: Promise<void> | undefined;
  private superviseTimer: NodeJS.Timeout | undefined;
  private wakeSupervisor: (() => void) | undefined;
  private restarts: ServerRestarts | undefined;

  constructor(
    pgdata: string,
    private readonly options: ManagedOptions,
  ) {
    this.pgdata = resolve(options.cwd, pgdata);
  }

  /** `embedded PostgreSQL 15.18 in ./.bgworker/pgdata (port 54321, managed)`; version and port once started. */
  get description(): string {
    const kind = this.options.embedded ? "embedded PostgreSQL" : "PostgreSQL";
    const binaries = this.cluster?.binaries;
    const version = binaries === undefined ? "" : ` ${binaries.version} (${binaries.kind} binaries in ${binaries.bindir})`;
    const port = this.port === undefined ? "" : `port ${this.port}, `;
    const where = this.relocated ? "outside the project, which the server's OS user cannot reach; " : "";
    return `${kind}${version} in ${this.shownPath()} (${where}${port}managed, log ${SERVER_LOG})`;
  }

  async start(): Promise<void> {
    if (this.cluster !== undefined) throw makeError(Error, "ERR_BGWORKER_FAILED", `${this.pgdata}: the managed database is already started`);
    const { logger } = this.options;
    const place = this.options.embedded ? embeddedPgdata(this.pgdata, serverOwner()) : undefined;
    if (place !== undefined) ({ pgdata: this.pgdata, relocated: this.relocated } = place);
    const cluster = await Cluster.at(this.pgdata);
    logger.log("LOG", `using ${describeBinaries(cluster.binaries)}`);
    if (place?.relocated === true) {
      const why = place.blockedAt === undefined ? "" : `the "${cluster.owner.name}" OS user cannot pass through ${place.blockedAt}: `;
      logger.log("LOG", `${why}the cluster of ${this.options.cwd} is kept in ${this.pgdata}`);
    }
    if (this.options.embedded) await letOwnerThrough(dirname(this.pgdata), cluster.owner);
    if (!(await cluster.exists())) {
      logger.log("LOG", `creating a PostgreSQL ${cluster.binaries.version} cluster in ${this.pgdata}`);
      await cluster.init();
    }
    const onDisk = await cluster.majorVersionOnDisk();
    const major = cluster.binaries.version.split(".")[0];
    if (onDisk !== major) {
      throw makeError(
        Error,
        "ERR_BGWORKER_PGDATA_INVALID",
        `database.pgdata: ${this.pgdata} holds a PostgreSQL ${onDisk ?? "?"} cluster, but the server binaries in ` +
          `${cluster.binaries.bindir} are version ${cluster.binaries.version} (the major versions must match)`,
      );
    }
    let running = await cluster.runningPid();
    const owner = await this.recordedOwner();
    if (running !== null && owner !== null && owner !== process.pid && !processAlive(owner)) {
      // A postmaster that was killed (SIGKILL, OOM) cannot stop its server; the next one does it first.
      logger.log("LOG", `stopping the PostgreSQL server (pid ${running}) left running by postmaster ${owner}, which is gone`);
      await cluster.stop("fast");
      running = await cluster.runningPid();
    }
    if (running !== null) {
      throw makeError(
        Error,
        "ERR_BGWORKER_PGDATA_IN_USE",
        `database.pgdata: a PostgreSQL server (pid ${running}) is already running on ${this.pgdata}: ` +
          `stop it (pg_ctl stop -D ${this.pgdata}) or serve it with --database URL`,
      );
    }
    // The port persists across runs; if another process took it meanwhile, the cluster moves to a free one.
    const saved = await cluster.savedPort();
    let port = await choosePort(saved);
    if (port !== saved) await cluster.savePort(port);
    try {
      await cluster.start({ port });
    } catch (error) {
      // Lost the race for the port between the check and the bind: try once more on a fresh one.
      if (!/address already in use|could not bind|could not create any TCP/i.test((error as Error).message)) throw error;
      port = await choosePort(null);
      await cluster.savePort(port);
      await cluster.start({ port });
    }
    this.cluster = cluster;
    this.startedHere = true;
    this.restarts = new ServerRestarts(this.options.restartBackoff ?? DEFAULT_RESTART_BACKOFF, Date.now());
    await writeFile(join(this.pgdata, OWNER_FILE), `${process.pid}\n`);
    this.port = (await cluster.pidFile())?.port ?? port;
    logger.log("LOG", `database system is ready: PostgreSQL ${cluster.binaries.version} on 127.0.0.1 port ${this.port}, data ${this.pgdata}`);
  }

  connectionParams(): ConnectionParams {
    if (this.port === undefined) throw makeError(Error, "ERR_BGWORKER_FAILED", `${this.pgdata}: the managed database is not started yet`);
    return { host: "127.0.0.1", port: this.port, user: SUPERUSER, database: "postgres" };
  }

  watch(onPhase: PhaseListener): void {
    if (this.monitor !== undefined) throw makeError(Error, "ERR_BGWORKER_FAILED", "the database is already being watched");
    const { logger } = this.options;
    const monitor = new PhaseMonitor(
      () => this.connectionParams(),
      (phase, reason) => {
        onPhase(phase, reason);
        if (phase === "starting") this.supervise();
      },
      { notice: (message) => logger.log("LOG", message) },
    );
    this.monitor = monitor;
    monitor.start();
    // The monitor tells of a loss at once, but the server's pid file may still name a live process then
    // (a server shutting down): look again while the database stays unreachable.
    this.superviseTimer = setInterval(() => {
      if (monitor.current === "starting") this.supervise();
    }, SUPERVISE_MS);
    this.superviseTimer.unref();
  }

  /** `pg_ctl reload`: the server re-reads postgresql.conf, postgresql.auto.conf, pg_hba.conf and pg_ident.conf. */
  async reload(): Promise<boolean> {
    if (this.cluster === undefined || !this.startedHere) return false;
    await runAs(this.cluster.owner, this.cluster.program("pg_ctl"), ["reload", "-D", this.pgdata], { timeoutMs: 30_000 });
    return true;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.superviseTimer);
    this.wakeSupervisor?.();
    await this.supervisor;
    await this.monitor?.stop();
    this.monitor = undefined;
    if (this.cluster !== undefined && this.startedHere) {
      this.startedHere = false;
      await this.cluster.stop("fast");
      await rm(join(this.pgdata, OWNER_FILE), { force: true });
    }
  }

  /** Checks the server, and starts it again if it has exited; one check at a time. */
  private supervise(): void {
    if (this.supervisor !== undefined || this.stopping || !this.startedHere) return;
    this.supervisor = this.restartIfGone().finally(() => (this.supervisor = undefined));
  }

  /**
   * A managed server that exits without being asked (a crash, SIGKILL, `pg_ctl stop` by hand, the OOM killer)
   * is started again on the same port, damped as workers' restart storms are (SPEC §6). When to try and what
   * to log is ServerRestarts' decision; this only carries it out.
   */
  private async restartIfGone(): Promise<void> {
    const cluster = this.cluster;
    const port = this.port;
    const restarts = this.restarts;
    if (cluster === undefined || port === undefined || restarts === undefined) return;
    // Running (a shutdown still under way, or restarted by someone else): nothing to do.
    if ((await cluster.runningPid()) !== null) return;
    const { logger } = this.options;
    const exit = restarts.exited(Date.now());
    logger.log("LOG", exit.line);
    let next = exit.next;
    while (!this.stopping) {
      if (next.delayMs > 0) await this.pause(next.delayMs);
      if (this.stopping) return;
      if ((await cluster.runningPid()) !== null) {
        // Started by someone else meanwhile: its run counts from now.
        restarts.started(Date.now(), port);
        return;
      }
      logger.log("LOG", next.line);
      try {
        await cluster.start({ port });
        logger.log("LOG", restarts.started(Date.now(), port));
        return;
      } catch (error) {
        // e.g. the killed server's processes still hold its lock file or shared memory: tried again under the
        // same damping.
        const failure = restarts.startFailed(Date.now(), error instanceof Error ? error.message : String(error));
        logger.log("LOG", failure.line);
        next = failure.next;
      }
    }
  }

  /** Waits `ms`, or less if the database is stopped meanwhile. */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done(): void {
        clearTimeout(timer);
        self.wakeSupervisor = undefined;
        resolve();
      }
      this.wakeSupervisor = done;
    });
  }

  /** The pid of the postmaster that started the server now on this pgdata, if one recorded it. */
  private async recordedOwner(): Promise<number | null> {
    try {
      const pid = Number((await readFile(join(this.pgdata, OWNER_FILE), "utf8")).trim());
      return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
    } catch {
      return null;
    }
  }

  /** `./.bgworker/pgdata` when inside the working directory: shorter in the startup line. */
  private shownPath(): string {
    const rel = relative(this.options.cwd, this.pgdata);
    return rel !== "" && !rel.startsWith("..") && !isAbsolute(rel) ? `./${rel}` : this.pgdata;
  }
}

/** One start of the managed server that supervision decided on: wait `delayMs`, then log `line` and start it. */
export interface ServerRestartAttempt {
  /** 1 for the first attempt after an exit, counting failed starts. */
  readonly attempt: number;
  /** Restart-storm damping: 0 while the ordinary rule applies (start again at once). */
  readonly delayMs: number;
  /** Logged as the attempt begins, after the delay. */
  readonly line: string;
}

/**
 * The managed server's restart decision (SPEC §6), apart from processes and clocks: every time is an
 * argument, in milliseconds. The server's restart time is 0, so the delay is exactly the workers' storm
 * damping (`nextFastFailures`, `dampingDelay`): a run shorter than `fastFailureMs` counts as a fast failure,
 * and so does a start that fails (a run of 0 ms); from the `failures`-th fast failure in a row each attempt
 * waits `initialDelayMs` doubled per further fast failure, capped at `maxDelayMs`; a run of `resetAfterMs`
 * clears the count. A run in between leaves the count as it is.
 */
export class ServerRestarts {
  #fastFailures = 0;
  #startedAt: number;
  #attempt = 0;

  constructor(
    private readonly backoff: RestartBackoff,
    startedAt: number,
  ) {
    this.#startedAt = startedAt;
  }

  /** Fast failures in a row so far (failed starts included). */
  get fastFailures(): number {
    return this.#fastFailures;
  }

  /** The server was found gone at `now`: the line to log, and the first attempt to start it again. */
  exited(now: number): { readonly line: string; readonly next: ServerRestartAttempt } {
    const runMs = Math.max(0, now - this.#startedAt);
    this.#attempt = 0;
    return {
      line: `the managed PostgreSQL server exited without being asked to, after running ${runMs} ms: starting it again`,
      next: this.#next(runMs),
    };
  }

  /** The current attempt failed at `now`: the line to log, and the next attempt. */
  startFailed(now: number, reason: string): { readonly line: string; readonly next: ServerRestartAttempt } {
    this.#startedAt = now;
    return { line: `could not start the PostgreSQL server again (attempt ${this.#attempt}): ${reason}`, next: this.#next(0) };
  }

  /** The server runs again since `now` (the current attempt succeeded): the line to log. */
  started(now: number, port: number): string {
    this.#startedAt = now;
    return `database system is ready again: PostgreSQL on 127.0.0.1 port ${port} (attempt ${this.#attempt})`;
  }

  #next(runMs: number): ServerRestartAttempt {
    this.#fastFailures = nextFastFailures(this.#fastFailures, runMs, this.backoff);
    const delayMs = dampingDelay(this.#fastFailures, this.backoff);
    const attempt = ++this.#attempt;
    const damping = delayMs > 0 ? `, after ${delayMs} ms of restart-storm damping` : "";
    return { attempt, delayMs, line: `starting the PostgreSQL server again (attempt ${attempt}${damping})` };
  }
}

/**
 * `./.bgworker` is bgworker's own directory, and the control socket may have created it owner-only (0700).
 * When the server runs as another OS user (the postmaster is root), that user must pass through it to reach
 * `pgdata`: search permission only (0711), so nobody else can list it; the socket itself stays 0600.
 */
async function letOwnerThrough(dir: string, owner: ServerOwner): Promise<void> {
  if (owner.uid === undefined || owner.uid === process.getuid?.()) return;
  await mkdir(dir, { recursive: true });
  const mode = (await stat(dir)).mode & 0o777;
  if ((mode & 0o011) !== 0o011) await chmod(dir, mode | 0o011);
}
