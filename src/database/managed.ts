/** A cluster that the postmaster runs itself: created on first run, started, watched, stopped after the workers. */
import { chmod, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { dirname, isAbsolute, join, relative, resolve } from "node:path";
import type { Logger } from "../log.js";
import { Cluster, SERVER_LOG, SUPERUSER } from "./cluster.js";
import { PhaseMonitor } from "./monitor.js";
import { describeBinaries } from "./binaries.js";
import { embeddedPgdata } from "./location.js";
import { processAlive, serverOwner, type ServerOwner } from "./owner.js";
import { choosePort } from "./ports.js";

/** Beside the cluster's own files: which postmaster started the server, so a successor can clean up after it. */
const OWNER_FILE = "bgworker.owner";
import type { ConnectionParams, PhaseListener, ServedDatabase } from "./types.js";

export class ManagedDatabase implements ServedDatabase {
  private pgdata: string;
  /** Kept outside the project because the server's OS user cannot reach it (see location.ts). */
  private relocated = false;
  private cluster: Cluster | undefined;
  private port: number | undefined;
  private startedHere = false;
  private monitor: PhaseMonitor | undefined;

  constructor(
    pgdata: string,
    private readonly options: { cwd: string; logger: Logger; embedded: boolean },
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
    if (this.cluster !== undefined) throw new Error(`${this.pgdata}: the managed database is already started`);
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
      throw new Error(
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
      throw new Error(
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
    await writeFile(join(this.pgdata, OWNER_FILE), `${process.pid}\n`);
    this.port = (await cluster.pidFile())?.port ?? port;
    logger.log("LOG", `database system is ready: PostgreSQL ${cluster.binaries.version} on 127.0.0.1 port ${this.port}, data ${this.pgdata}`);
  }

  connectionParams(): ConnectionParams {
    if (this.port === undefined) throw new Error(`${this.pgdata}: the managed database is not started yet`);
    return { host: "127.0.0.1", port: this.port, user: SUPERUSER, database: "postgres" };
  }

  watch(onPhase: PhaseListener): void {
    if (this.monitor !== undefined) throw new Error("the database is already being watched");
    this.monitor = new PhaseMonitor(() => this.connectionParams(), onPhase);
    this.monitor.start();
  }

  async stop(): Promise<void> {
    await this.monitor?.stop();
    this.monitor = undefined;
    if (this.cluster !== undefined && this.startedHere) {
      this.startedHere = false;
      await this.cluster.stop("fast");
      await rm(join(this.pgdata, OWNER_FILE), { force: true });
    }
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
