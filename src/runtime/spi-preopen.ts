/**
 * A database session opened ahead of time by a spare runner, for the served database's default database and
 * user, so that an SPI worker's `connectWorkerToSpi()` costs one `set_config` round trip instead of a new
 * connection (a server process forked, authentication, start-up). It is opened only when the postmaster
 * has seen SPI workers, and shows in `pg_stat_activity` as `bgworker spare` until a worker adopts it: only
 * then is it renamed after the worker's type, so a session that no worker uses never carries a worker's name.
 * A worker that is not an SPI worker closes it at start; one that connects elsewhere (another dbname or user)
 * closes it, and waits for the server to end it, before its own session is opened.
 *
 * The session is kept on `globalThis` under `Symbol.for("bgworker.spi-preopen")`, as the SPI session is: the
 * runner opens and dedicates it through its own copy of this package, and the worker's library may reach
 * `connectWorkerToSpi()` through another (an extension's own `node_modules`). With module state, that copy
 * would find no session to adopt or close, and the spare's session would stay open beside the worker's.
 */
import pg from "pg";
import { passwordOf } from "../database/password.js";
import type { ConnectionParams } from "../database/types.js";

interface Preopened {
  readonly identity: string;
  readonly client: pg.Client;
  /** Resolves true once connected, false if the connection failed. */
  readonly connected: Promise<boolean>;
  /** Lost while idle (server restart, pg_terminate_backend) or being closed: never adopted. */
  broken: boolean;
  readonly onIdleFailure: () => void;
}

/**
 * What this process holds, shared by every copy of the package in it. Functions, not only data, so that a
 * copy of another version works through the code of the copy that opened the session.
 */
interface SpareSession {
  open(params: ConnectionParams, types: pg.CustomTypesConfig): void;
  dedicate(spi: boolean): Promise<void>;
  adopt(config: pg.ClientConfig, applicationName: string): Promise<pg.Client | undefined>;
}

const SPARE_SESSION = Symbol.for("bgworker.spi-preopen");
type ProcessGlobals = { [SPARE_SESSION]?: SpareSession };

const SPARE_APPLICATION_NAME = "bgworker spare";

function identityOf(config: { host?: string | undefined; port?: number | undefined; user?: string | undefined; database?: string | undefined }): string {
  return JSON.stringify([config.host, config.port, config.user, config.database]);
}

/**
 * Ends the session; resolves once its socket is closed, or at once when it never connected. The server
 * process leaves `pg_stat_activity` before it closes its end of the socket (its status entry is cleared
 * before the socket, at exit), so once this resolves the session is gone from there too.
 */
async function close(session: Preopened): Promise<void> {
  session.broken = true;
  await session.client.end().catch(() => undefined);
}

function makeSpareSession(): SpareSession {
  let preopened: Preopened | undefined;
  /** Set once the process has become a worker: from then on no session is opened ahead of time. */
  let dedicated = false;

  return {
    open(params, types) {
      if (dedicated) return;
      const identity = identityOf(params);
      if (preopened !== undefined && preopened.identity === identity && !preopened.broken) return;
      // Replaced (broken, or the served database changed): an idle session carries no worker's name.
      if (preopened !== undefined) void close(preopened);
      const client = new pg.Client({
        host: params.host,
        port: params.port,
        user: params.user,
        database: params.database,
        password: passwordOf(params),
        application_name: SPARE_APPLICATION_NAME,
        types,
        keepAlive: true,
      });
      const session: Preopened = {
        identity,
        client,
        connected: client.connect().then(
          () => !session.broken,
          () => false,
        ),
        broken: false,
        // While idle, a lost session is only dropped: never a crash (pg emits 'error' with no other listener).
        onIdleFailure: () => {
          session.broken = true;
        },
      };
      client.on("error", session.onIdleFailure);
      client.on("end", session.onIdleFailure);
      void session.connected.then((ok) => {
        if (!ok) void close(session);
      });
      preopened = session;
    },

    async dedicate(spi) {
      dedicated = true;
      const session = preopened;
      if (session === undefined || spi) return; // an SPI worker adopts or closes it in connectWorkerToSpi()
      preopened = undefined;
      await close(session);
    },

    async adopt(config, applicationName) {
      dedicated = true;
      const session = preopened;
      preopened = undefined;
      if (session === undefined) return undefined;
      if (session.identity !== identityOf(config) || !(await session.connected) || session.broken) {
        await close(session);
        return undefined;
      }
      try {
        await session.client.query("SELECT pg_catalog.set_config('application_name', $1, false)", [applicationName]);
      } catch {
        await close(session);
        return undefined;
      }
      if (session.broken) {
        await close(session);
        return undefined;
      }
      session.client.off("error", session.onIdleFailure);
      session.client.off("end", session.onIdleFailure);
      return session.client;
    },
  };
}

function spareSession(): SpareSession {
  const globals = globalThis as typeof globalThis & ProcessGlobals;
  globals[SPARE_SESSION] ??= makeSpareSession();
  return globals[SPARE_SESSION];
}

/**
 * Opens (once) a session for `params`' database and user, with the parsers `types` of the SPI session.
 * A session that broke is replaced on the next call; once this process has become a worker, nothing is opened.
 */
export function preopenSession(params: ConnectionParams, types: pg.CustomTypesConfig): void {
  spareSession().open(params, types);
}

/**
 * This process has become a worker; `applicationName` is its type for an SPI worker, null for any other.
 * An SPI worker's session is kept, still named `bgworker spare`, for `connectWorkerToSpi()` to adopt or close;
 * any other worker's is closed (resolves once it is). No session is opened ahead of time after this.
 */
export function dedicatePreopenedSession(applicationName: string | null): Promise<void> {
  return spareSession().dedicate(applicationName !== null);
}

/**
 * The pre-opened session, connected and renamed `applicationName`, when it is for `config`'s database and
 * user; otherwise undefined, once the session is closed. Called once, by `connectSpi()`.
 */
export function adoptPreopenedSession(config: pg.ClientConfig, applicationName: string): Promise<pg.Client | undefined> {
  return spareSession().adopt(config, applicationName);
}
