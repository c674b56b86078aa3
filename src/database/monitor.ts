/**
 * The phase monitor. It must occupy no database (SPEC §6), so that `CREATE DATABASE ... TEMPLATE postgres`,
 * `DROP DATABASE` and `ALTER DATABASE ... RENAME` work while a postmaster runs. Two ways, best first:
 *
 * - **replication**: one physical replication connection (`replication=true`: a walsender, which is in no
 *   database) asking `SHOW in_hot_standby` (PostgreSQL 14+) every `pollMs`. Loss of the server is seen at
 *   once through the client's 'error' and 'end' events, not only at the next poll.
 * - **probe**: when the server refuses replication connections (no REPLICATION privilege, no `replication`
 *   line in pg_hba.conf, `max_wal_senders = 0`) or is older than 14: every `pollMs` a short connection to the
 *   served database runs `select pg_is_in_recovery()` and closes. CREATE DATABASE waits up to 5 s for other
 *   sessions to leave its template, so a probe of a few milliseconds never makes it fail.
 *
 * cannot connect -> starting; in recovery (a hot standby) -> consistent; otherwise -> running. While
 * `starting`, the listener hears the reason again each time it changes (connection refused, password
 * authentication failed, database does not exist...), so the log can say why the database cannot be reached.
 */
import pg from "pg";
import type { Phase } from "../status.js";
import { passwordOf } from "./password.js";
import type { ConnectionParams, PhaseListener } from "./types.js";

export interface MonitorOptions {
  /** Time between polls, and between connection attempts while the server is away. */
  readonly pollMs?: number;
  /** A connection attempt or a poll that takes longer than this counts as a lost server. */
  readonly timeoutMs?: number;
  /** One line for the log when the monitor falls back from a replication connection to probes. */
  readonly notice?: (message: string) => void;
}

export type MonitorMode = "replication" | "probe";

/** SQLSTATE cannot_connect_now: starting up, shutting down, in recovery without hot standby. */
const CANNOT_CONNECT_NOW = "57P03";
/** While the server itself refuses us (authentication, no such database), ask at most this often: each
 * refusal is a FATAL line in its log, and such a refusal is fixed by a person, not in milliseconds. */
const REFUSED_RETRY_MS = 1000;
/** SQLSTATE undefined_object: `in_hot_standby` is unknown before PostgreSQL 14. */
const UNDEFINED_OBJECT = "42704";

export class PhaseMonitor {
  private readonly pollMs: number;
  private readonly timeoutMs: number;
  private phase: Phase | undefined;
  private reason: string | undefined;
  /** The last attempt was refused by the server itself (not "starting up", not unreachable). */
  private refused = false;
  private client: pg.Client | undefined;
  private probing = false;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;

  constructor(
    private readonly params: () => ConnectionParams,
    private readonly onPhase: PhaseListener,
    private readonly options: MonitorOptions = {},
  ) {
    this.pollMs = options.pollMs ?? 100;
    this.timeoutMs = options.timeoutMs ?? 2000;
  }

  /** The last phase reported, if any. */
  get current(): Phase | undefined {
    return this.phase;
  }

  /** How the monitor watches the server now. */
  get mode(): MonitorMode {
    return this.probing ? "probe" : "replication";
  }

  start(): void {
    if (this.loop !== undefined) throw new Error("the phase monitor is already watching");
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loop;
    await this.drop(this.client);
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      if (this.probing) await this.probe();
      else await this.poll();
      await this.sleep(this.refused ? Math.max(this.pollMs, REFUSED_RETRY_MS) : this.pollMs);
    }
  }

  /** One poll over the replication connection, opening it first if needed. */
  private async poll(): Promise<void> {
    const client = this.client ?? (await this.connect());
    if (client === undefined || this.stopped) return;
    try {
      const result = await client.query<{ in_hot_standby: string }>("SHOW in_hot_standby");
      if (this.client === client) this.reportRecovery(result.rows[0]?.in_hot_standby === "on");
    } catch (error) {
      if (codeOf(error) === UNDEFINED_OBJECT) {
        await this.drop(client);
        this.fallBack("the server is older than PostgreSQL 14 (no in_hot_standby)");
        return;
      }
      this.lost(client, messageOf(error));
    }
  }

  /** Opens the replication connection; on failure reports `starting` (or falls back to probes) and returns undefined. */
  private async connect(): Promise<pg.Client | undefined> {
    const params = this.safeParams();
    if (params === undefined) return undefined;
    const client = newClient(params, this.timeoutMs, true);
    // Handlers first: a pg client with no 'error' listener would crash the process when the server goes away.
    client.on("error", (error: Error) => this.lost(client, messageOf(error)));
    client.on("end", () => this.lost(client, "connection to the server closed"));
    try {
      await client.connect();
    } catch (error) {
      await this.drop(client);
      const code = codeOf(error);
      // The server answered but refused replication (privilege, pg_hba.conf, max_wal_senders): if an ordinary
      // connection works, probe from now on. Otherwise that connection's reason is the one the user can act on.
      if (error instanceof pg.DatabaseError && code !== CANNOT_CONNECT_NOW) {
        const seen = await this.look();
        if (seen !== undefined && seen.phase !== "starting") this.fallBack(`the server refused a replication connection: ${error.message}`);
        if (seen !== undefined) this.report(seen.phase, seen.reason, seen.refused);
      } else {
        this.report("starting", reasonOf(error, params));
      }
      return undefined;
    }
    // A walsender ignores the database name: one short ordinary connection checks that the served database
    // exists and lets this user in (pg_hba.conf may treat the two kinds differently), on every (re)connect.
    if (this.stopped || !(await this.probe())) {
      await this.drop(client);
      return undefined;
    }
    this.client = client;
    return client;
  }

  /** A short connection to the served database: reports the phase it sees; true if it connected. */
  private async probe(): Promise<boolean> {
    const seen = await this.look();
    if (seen !== undefined) this.report(seen.phase, seen.reason, seen.refused);
    return seen?.phase !== "starting";
  }

  /** Connects to the served database, asks `pg_is_in_recovery()` and disconnects; undefined without parameters. */
  private async look(): Promise<{ phase: Phase; reason: string; refused?: boolean } | undefined> {
    const params = this.safeParams();
    if (params === undefined) return undefined;
    const client = newClient(params, this.timeoutMs, false);
    client.on("error", () => undefined); // the awaited calls below report it
    try {
      await client.connect();
      const result = await client.query<{ in_recovery: boolean }>("select pg_is_in_recovery() as in_recovery");
      return recoveryPhase(result.rows[0]?.in_recovery === true);
    } catch (error) {
      return { phase: "starting", reason: reasonOf(error, params), refused: refusedBy(error) };
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  private fallBack(why: string): void {
    if (this.probing) return;
    this.probing = true;
    this.options.notice?.(`phase monitor: ${why}; probing the database with a short connection every ${this.pollMs} ms instead`);
  }

  private safeParams(): ConnectionParams | undefined {
    try {
      return this.params();
    } catch (error) {
      // e.g. a managed cluster watched before it has started: not there yet, so `starting`.
      this.report("starting", error instanceof Error ? error.message : String(error));
      return undefined;
    }
  }

  /** The monitor's connection broke: `starting` now, and reconnect without waiting for the next poll. */
  private lost(client: pg.Client, reason: string): void {
    if (this.client !== client) return; // an old or never-established connection: already accounted for
    this.client = undefined;
    void this.drop(client);
    if (!this.stopped) this.report("starting", `lost the server: ${reason}`);
    this.wake?.();
  }

  private reportRecovery(inRecovery: boolean): void {
    const seen = recoveryPhase(inRecovery);
    this.report(seen.phase, seen.reason);
  }

  /** Tells the listener of a new phase, or of a new reason while `starting` (why the server cannot be reached). */
  private report(phase: Phase, reason: string, refused = false): void {
    if (this.stopped) return;
    this.refused = refused;
    if (phase === this.phase && (phase !== "starting" || reason === this.reason)) return;
    this.phase = phase;
    this.reason = reason;
    this.onPhase(phase, reason);
  }

  private async drop(client: pg.Client | undefined): Promise<void> {
    if (client === undefined) return;
    if (this.client === client) this.client = undefined;
    try {
      await client.end();
    } catch {
      // already broken: nothing to close
    }
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = undefined;
        done();
      };
    });
  }
}

function recoveryPhase(inRecovery: boolean): { phase: Phase; reason: string } {
  return inRecovery ? { phase: "consistent", reason: "server is in recovery (hot standby)" } : { phase: "running", reason: "server accepts writes" };
}

function newClient(params: ConnectionParams, timeoutMs: number, replication: boolean): pg.Client {
  return new pg.Client({
    host: params.host,
    port: params.port,
    user: params.user,
    database: params.database,
    password: passwordOf(params),
    application_name: "bgworker phase monitor",
    connectionTimeoutMillis: timeoutMs,
    query_timeout: timeoutMs,
    keepAlive: true,
    // A physical walsender: connected to no database. pg passes it on in the startup packet.
    ...(replication ? { replication: "true" } : {}),
  } as pg.ClientConfig);
}

/** The error's own message with its code: what a broken connection says (`Connection terminated unexpectedly`). */
function messageOf(error: unknown): string {
  const code = codeOf(error);
  const message = error instanceof Error ? error.message : String(error);
  return code === undefined || code === "" ? message : `${message} (${code})`;
}

/** The server answered and said no for a reason that a retry in 100 ms will not change. */
function refusedBy(error: unknown): boolean {
  return error instanceof pg.DatabaseError && codeOf(error) !== CANNOT_CONNECT_NOW;
}

function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/** What the OS says for the network errors a connection meets, in libpq's words. */
const NETWORK_ERRORS: Readonly<Record<string, string>> = {
  ECONNREFUSED: "Connection refused",
  ECONNRESET: "Connection reset by peer",
  EHOSTUNREACH: "No route to host",
  ENETUNREACH: "Network is unreachable",
  ETIMEDOUT: "Connection timed out",
  ENOENT: "No such file or directory",
  EACCES: "Permission denied",
};

/**
 * A one-line reason from a pg or network error, as libpq puts it: `connection to server at "db", port 5432
 * failed: Connection refused`, `... failed: password authentication failed for user "app"`. Never holds a
 * password (neither the server's messages nor the parameters shown carry one).
 */
export function reasonOf(error: unknown, params?: ConnectionParams): string {
  const where =
    params === undefined
      ? "connection to server"
      : params.host.startsWith("/")
        ? `connection to server on socket "${params.host}/.s.PGSQL.${params.port}"`
        : `connection to server at "${params.host}", port ${params.port}`;
  if (error instanceof pg.DatabaseError) return `${where} failed: ${error.message}`;
  const code = codeOf(error);
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") return `could not translate host name "${params?.host ?? "?"}" to address`;
  if (code !== undefined && NETWORK_ERRORS[code] !== undefined) return `${where} failed: ${NETWORK_ERRORS[code]}`;
  const message = error instanceof Error ? error.message : String(error);
  return `${where} failed: ${message}`;
}
