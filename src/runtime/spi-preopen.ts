/**
 * A database session opened ahead of time by a spare runner, for the served database's default database and
 * user, so that an SPI worker's `connectWorkerToSpi()` costs one `set_config` round trip instead of a new
 * connection (a server process forked, authentication, start-up). It is opened only when the postmaster
 * has seen SPI workers; while idle it shows in `pg_stat_activity` as `bgworker spare`. A worker that is not
 * an SPI worker closes it at start; one that connects elsewhere (another dbname or user) closes it then.
 */
import pg from "pg";
import { passwordOf } from "../database/password.js";
import type { ConnectionParams } from "../database/types.js";

interface Preopened {
  readonly identity: string;
  readonly client: pg.Client;
  /** Resolves true once connected, false if the connection failed or was lost while idle. */
  readonly connected: Promise<boolean>;
  broken: boolean;
  /** The `set_config('application_name', …)` sent when the worker became known. */
  named: Promise<unknown> | undefined;
  readonly onIdleFailure: () => void;
}

let preopened: Preopened | undefined;

const SPARE_APPLICATION_NAME = "bgworker spare";

function identityOf(config: { host?: string | undefined; port?: number | undefined; user?: string | undefined; database?: string | undefined }): string {
  return JSON.stringify([config.host, config.port, config.user, config.database]);
}

function discard(session: Preopened): void {
  session.broken = true;
  session.client.end().catch(() => undefined);
}

/**
 * Opens (once) a session for `params`' database and user, with the parsers `types` of the SPI session.
 * A session that broke is replaced on the next call.
 */
export function preopenSession(params: ConnectionParams, types: pg.CustomTypesConfig): void {
  const identity = identityOf(params);
  if (preopened !== undefined && preopened.identity === identity && !preopened.broken) return;
  if (preopened !== undefined) discard(preopened);
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
    named: undefined,
    // While idle, a lost session (server restart, pg_terminate_backend) is only dropped: never a crash.
    onIdleFailure: () => {
      session.broken = true;
    },
  };
  client.on("error", session.onIdleFailure);
  client.on("end", session.onIdleFailure);
  session.connected.then((ok) => {
    if (!ok) discard(session);
  });
  preopened = session;
}

function nameSession(session: Preopened, applicationName: string): void {
  session.named = session.connected.then((ok) =>
    ok ? session.client.query("SELECT pg_catalog.set_config('application_name', $1, false)", [applicationName]) : undefined,
  );
  session.named.catch(() => {
    session.broken = true;
  });
}

/**
 * This process has become a worker: an SPI worker's session is renamed after its type at once (the query is
 * queued, not awaited); any other worker closes it.
 */
export function dedicatePreopenedSession(applicationName: string | null): void {
  const session = preopened;
  if (session === undefined) return;
  if (applicationName === null) {
    preopened = undefined;
    discard(session);
  } else {
    nameSession(session, applicationName);
  }
}

/**
 * The pre-opened session, connected and named, when it is for `config`'s database and user; undefined (and
 * the session closed) otherwise. Called once, by `connectWorkerToSpi()`.
 */
export async function adoptPreopenedSession(config: pg.ClientConfig, applicationName: string): Promise<pg.Client | undefined> {
  const session = preopened;
  preopened = undefined;
  if (session === undefined) return undefined;
  if (session.identity !== identityOf(config) || !(await session.connected) || session.broken) {
    discard(session);
    return undefined;
  }
  try {
    if (session.named === undefined) nameSession(session, applicationName);
    await session.named;
  } catch {
    discard(session);
    return undefined;
  }
  if (session.broken) {
    discard(session);
    return undefined;
  }
  session.client.off("error", session.onIdleFailure);
  session.client.off("end", session.onIdleFailure);
  return session.client;
}
