/**
 * Cluster mode's shell (SPEC §10): the node's one cluster session, and a lease machine per cluster-scoped
 * static worker. Every decision is a lease machine's (lease-machine.ts); this file runs their queries on the
 * session, keeps their timers, hears releases (LISTEN), and carries `startWorker`/`stopWorker` to the
 * postmaster's machine as `lease-granted`/`lease-stop`. What the postmaster's machine says of the workers'
 * processes comes back through `workerEvent`. Events reach the machines through one queue, one at a time,
 * as in the postmaster's shell, so a machine is never entered while its actions are being carried out.
 *
 * The session: opened with the settings of lease-sql.ts (keepalives, `tcp_user_timeout`,
 * `idle_session_timeout`, `statement_timeout` from the lease's time), then the schema is made if missing
 * (under a transaction-scoped advisory lock, so that nodes starting together do not race), the node is
 * registered, and LISTEN. When it is lost, every lease held through it is lost with it (its advisory locks
 * are gone), and a new one is opened every renewal period until one opens.
 */
import { hostname } from "node:os";
import { performance } from "node:perf_hooks";
import type pg from "pg";
import type { ConnectionParams } from "../database/types.js";
import { passwordOf } from "../database/password.js";
import { makeError } from "../errors.js";
import type { LogEvent } from "../log-events.js";
import type { LeaseWorkerEvent } from "../postmaster/machine.js";
import type { ShutdownMode } from "../status.js";
import { LeaseMachine, type LeaseAction, type LeaseEvent, type LeaseLogEvent, type LeaseTimerKey } from "./lease-machine.js";
import * as sql from "./lease-sql.js";
import { nodeIdInUse, type ClusterConfig } from "./options.js";

/** What the shell needs of the postmaster around it. */
export interface ClusterHost {
  /** The lease of a cluster-scoped worker is this node's, at `generation`: it may run here. */
  grant(worker: string, generation: bigint): void;
  /** The lease is lost or given up: stop the worker (see the machine's `lease-stop`). */
  stopWorker(worker: string, signal: "SIGTERM" | "SIGKILL"): void;
  log(event: LogEvent): void;
  /** This node cannot take part in the cluster (a transaction pooler): the postmaster stops. */
  fail(error: Error): void;
}

/** What `bgworker status --cluster` shows (SPEC §10); every time is the server's, in ms since the epoch. */
export interface ClusterStatus {
  readonly cluster: string;
  readonly nodeId: string;
  readonly serverNow: number;
  readonly nodes: readonly {
    readonly nodeId: string;
    readonly host: string;
    readonly pid: number;
    readonly heartbeatAt: number;
    readonly live: boolean;
  }[];
  readonly leases: readonly {
    readonly worker: string;
    readonly holder: string | null;
    readonly generation: string;
    readonly expiresAt: number;
  }[];
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

type Queued = { readonly worker: string; readonly event: LeaseEvent };

export class ClusterShell {
  readonly #config: ClusterConfig;
  readonly #host: ClusterHost;
  readonly #connection: () => ConnectionParams | null;
  readonly #machines = new Map<string, LeaseMachine>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #queue: Queued[] = [];
  #draining = false;
  #client: pg.Client | null = null;
  /** Set once the first session is open, so that a node id in use stops the start but not a later reconnect. */
  #joined = false;
  #reconnect: NodeJS.Timeout | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #shuttingDown = false;
  #lastFailure: string | null = null;
  /** When the last query that carries the node's heartbeat (acquire, renew) was sent. */
  #lastBeat = -Infinity;
  readonly #done = new Set<string>();
  #allDone!: () => void;
  readonly #finished = new Promise<void>((resolve) => (this.#allDone = resolve));

  constructor(config: ClusterConfig, workers: readonly string[], connection: () => ConnectionParams | null, host: ClusterHost) {
    this.#config = config;
    this.#host = host;
    this.#connection = connection;
    for (const worker of workers) this.#machines.set(worker, new LeaseMachine({ worker, nodeId: config.nodeId, timings: config.timings }));
    if (this.#machines.size === 0) this.#allDone();
  }

  get name(): string {
    return this.#config.name;
  }

  get nodeId(): string {
    return this.#config.nodeId;
  }

  /**
   * Opens the first session. Throws what must stop the postmaster's start: another live node with this id,
   * a schema that cannot be made. A server that cannot be reached yet is not one of those: the session is
   * tried again every renewal period, and cluster-scoped workers wait for it.
   */
  async start(): Promise<void> {
    try {
      await this.#open();
    } catch (error) {
      if (isSetupError(error)) throw error;
      this.#sessionFailed(error);
    }
  }

  /** What the postmaster's machine says of a cluster-scoped worker's process. */
  workerEvent(worker: string, event: LeaseWorkerEvent): void {
    const at = performance.now();
    this.#feed(worker, event.kind === "worker-started" ? { kind: "worker-started", at, pid: event.pid } : { kind: "worker-exited", at, pid: event.pid, final: event.final });
  }

  /** Every lease is given up (released and NOTIFYed where held); resolves once all are, and the session is closed. */
  async shutdown(mode: ShutdownMode): Promise<void> {
    this.#shuttingDown = true;
    clearTimeout(this.#reconnect);
    const at = performance.now();
    for (const worker of this.#machines.keys()) this.#feed(worker, { kind: "shutdown", at, mode });
    // Each release is bounded by its query's time; this bound only guards against a lease never told its
    // worker is gone. Past it the session closes, and what it held expires on the server.
    let bound: NodeJS.Timeout | undefined;
    await Promise.race([this.#finished, new Promise((resolve) => (bound = setTimeout(resolve, 2 * this.#config.timings.leaseMs)))]);
    clearTimeout(bound);
    clearInterval(this.#heartbeat);
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    const client = this.#client;
    this.#client = null;
    await client?.end().catch(() => undefined);
  }

  /** `bgworker status --cluster`: the nodes and leases by the server's clock, read on the cluster session. */
  async status(): Promise<ClusterStatus> {
    const client = this.#client;
    if (client === null) {
      throw makeError(Error, "ERR_BGWORKER_CONNECTION_LOST", `cluster "${this.#config.name}": the cluster session is not open${this.#lastFailure === null ? "" : ` (${this.#lastFailure})`}`);
    }
    const statement = sql.clusterStatus(this.#config.name);
    const { rows } = await client.query<{ server_now: number; nodes: ClusterStatus["nodes"]; leases: ClusterStatus["leases"] }>(statement.text, [...statement.values]);
    const row = rows[0]!;
    return { cluster: this.#config.name, nodeId: this.#config.nodeId, serverNow: row.server_now, nodes: row.nodes, leases: row.leases };
  }

  // ----- the session ------------------------------------------------------------------------------

  async #open(): Promise<void> {
    const params = this.#connection();
    if (params === null) throw new Error("no database is served yet");
    const { default: pgDriver } = await import("pg");
    const { timings, nodeId, name } = this.#config;
    const client = new pgDriver.Client({
      host: params.host,
      port: params.port,
      user: params.user,
      database: params.database,
      password: passwordOf(params),
      application_name: `bgworker cluster ${nodeId}`.slice(0, 63),
      keepAlive: true,
      connectionTimeoutMillis: timings.leaseMs,
    });
    // Never an unhandled 'error': a lost session is an event like any other.
    client.on("error", (error) => this.#lost(client, messageOf(error)));
    client.on("end", () => this.#lost(client, "the connection was closed"));
    client.on("notification", (message) => this.#notification(message.channel, message.payload));
    try {
      await client.connect();
      const settings = sql.sessionSettings(timings, nodeId);
      const { rows } = await client.query<{ backend_pid: number }>(settings.text, [...settings.values]);
      const backendPid = rows[0]!.backend_pid;
      await this.#ensureSchema(client);
      const registration = sql.registerNode(name, nodeId, hostname(), process.pid);
      const registered = await client.query(registration.text, [...registration.values]);
      if (registered.rows.length === 0) throw Object.assign(nodeIdInUse(name, nodeId), { setup: !this.#joined });
      await client.query(sql.LISTEN);
      if (this.#shuttingDown) {
        await client.end();
        return;
      }
      this.#client = client;
      this.#joined = true;
      this.#lastFailure = null;
      this.#host.log({ event: "cluster-joined", cluster: name, nodeId, backendPid });
      this.#startHeartbeat(client);
      const at = performance.now();
      for (const worker of this.#machines.keys()) this.#feed(worker, { kind: "session-opened", at, backendPid });
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
  }

  /**
   * The schema, made when missing (nodes that start together take a transaction-scoped advisory lock first,
   * as concurrent CREATE ... IF NOT EXISTS may fail). When it is there a node runs no DDL, so it needs no
   * CREATE on the database; it needs the grants of `grantsFor`, and says so when it lacks them.
   */
  async #ensureSchema(client: pg.Client): Promise<void> {
    const check = sql.schemaCheck();
    const { rows } = await client.query<{ present: boolean; usable: boolean }>(check.text, [...check.values]);
    const setupError = (message: string): Error =>
      Object.assign(makeError(Error, "ERR_BGWORKER_DATABASE_START", `cluster "${this.#config.name}": ${message} (see docs/cluster.md, "Permissions")`), { setup: true });
    if (rows[0]?.present === true) {
      if (rows[0].usable !== true) {
        throw setupError(`the role "${this.#connection()?.user ?? "?"}" lacks the grants on schema "${sql.SCHEMA}": an administrator runs GRANT USAGE, SELECT, INSERT, UPDATE and EXECUTE as listed there`);
      }
      return;
    }
    try {
      await client.query(`BEGIN; SELECT pg_advisory_xact_lock(${sql.ADVISORY_NAMESPACE}, 0); ${sql.SCHEMA_DDL}; COMMIT;`);
    } catch (error) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw setupError(
        `cannot create the cluster's schema "${sql.SCHEMA}": ${messageOf(error)}; the role needs CREATE on the database, or an administrator creates the schema beforehand`,
      );
    }
  }

  #startHeartbeat(client: pg.Client): void {
    clearInterval(this.#heartbeat);
    const statement = sql.heartbeat(this.#config.name, this.#config.nodeId);
    const { renewMs } = this.#config.timings;
    this.#heartbeat = setInterval(() => {
      // A lease query carries the heartbeat: only a node that sent none for a period sends one of its own.
      if (this.#client !== client || performance.now() - this.#lastBeat < renewMs) return;
      this.#lastBeat = performance.now();
      client.query(statement.text, [...statement.values]).catch(() => undefined);
    }, renewMs);
    this.#heartbeat.unref();
  }

  /** The session ended: every lease held through it is lost; a new one is tried every renewal period. */
  #lost(client: pg.Client, reason: string): void {
    if (this.#client !== client) return;
    this.#client = null;
    clearInterval(this.#heartbeat);
    this.#host.log({ event: "cluster-session-lost", cluster: this.#config.name, reason });
    const at = performance.now();
    for (const worker of this.#machines.keys()) this.#feed(worker, { kind: "session-lost", at, reason });
    this.#scheduleReconnect();
  }

  #sessionFailed(error: unknown): void {
    const reason = messageOf(error);
    // Said once, and again when the reason changes.
    if (reason !== this.#lastFailure) this.#host.log({ event: "cluster-session-failed", cluster: this.#config.name, reason });
    this.#lastFailure = reason;
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    if (this.#shuttingDown) return;
    clearTimeout(this.#reconnect);
    this.#reconnect = setTimeout(() => {
      if (this.#shuttingDown || this.#client !== null) return;
      this.#open().catch((error: unknown) => {
        if (isSetupError(error)) {
          this.#host.fail(error as Error);
          return;
        }
        this.#sessionFailed(error);
      });
    }, this.#config.timings.renewMs);
  }

  #notification(channel: string, payload: string | undefined): void {
    if (channel !== sql.RELEASE_CHANNEL || payload === undefined) return;
    let message: { cluster?: unknown; worker?: unknown; node?: unknown; generation?: unknown };
    try {
      message = JSON.parse(payload) as typeof message;
    } catch {
      return;
    }
    if (message.cluster !== this.#config.name || typeof message.worker !== "string" || typeof message.node !== "string") return;
    if (!this.#machines.has(message.worker) || typeof message.generation !== "string") return;
    this.#feed(message.worker, { kind: "notified", at: performance.now(), node: message.node, generation: BigInt(message.generation) });
  }

  // ----- the lease machines ----------------------------------------------------------------------

  #feed(worker: string, event: LeaseEvent): void {
    this.#queue.push({ worker, event });
    if (this.#draining) return;
    this.#draining = true;
    try {
      for (let next = this.#queue.shift(); next !== undefined; next = this.#queue.shift()) {
        const machine = this.#machines.get(next.worker);
        if (machine === undefined) continue;
        for (const action of machine.handle(next.event)) this.#perform(next.worker, action);
      }
    } finally {
      this.#draining = false;
    }
  }

  #perform(worker: string, action: LeaseAction): void {
    switch (action.type) {
      case "query":
        return this.#query(worker, action);
      case "startWorker":
        return this.#host.grant(worker, action.generation);
      case "stopWorker":
        return this.#host.stopWorker(worker, action.signal);
      case "setTimer": {
        const id = `${worker}/${action.key}`;
        clearTimeout(this.#timers.get(id));
        this.#timers.set(
          id,
          setTimeout(() => {
            this.#timers.delete(id);
            this.#feed(worker, { kind: "timer", at: performance.now(), key: action.key as LeaseTimerKey });
          }, action.delayMs),
        );
        return;
      }
      case "clearTimer": {
        const id = `${worker}/${action.key}`;
        clearTimeout(this.#timers.get(id));
        this.#timers.delete(id);
        return;
      }
      case "log":
        return this.#host.log(logEventOf(action.event));
      case "fail":
        return this.#host.fail(action.error);
      case "done":
        this.#done.add(worker);
        if (this.#done.size === this.#machines.size) this.#allDone();
        return;
    }
  }

  /**
   * Runs a lease query on the session; its outcome is fed back. A query that outlives its time is reported
   * failed; an acquire or release whose outcome is unknown also ends the session (the lease may or may not
   * be this node's: ending the session gives back its lock, and the lease machines start again from there).
   */
  #query(worker: string, action: Extract<LeaseAction, { type: "query" }>): void {
    const client = this.#client;
    const { name, nodeId, timings } = this.#config;
    const failed = (reason: string): void => this.#feed(worker, { kind: "query-failed", at: performance.now(), query: action.query, reason });
    if (client === null) return failed("the cluster session is not open");
    const statement =
      action.query === "acquire"
        ? sql.acquire(name, worker, nodeId, timings)
        : action.query === "renew"
          ? sql.renew(name, worker, nodeId, action.generation, timings)
          : sql.release(name, worker, nodeId, action.generation);
    if (action.query !== "release") this.#lastBeat = performance.now();
    let settled = false;
    const timer = setTimeout(() => {
      settled = true;
      failed(`no answer within ${action.timeoutMs} ms`);
      if (action.query !== "renew") this.#endSession(client, `the ${action.query} query got no answer within ${action.timeoutMs} ms`);
    }, action.timeoutMs);
    client.query(statement.text, [...statement.values]).then(
      (result) => {
        clearTimeout(timer);
        if (settled) return;
        settled = true;
        this.#feed(worker, outcomeOf(action, result.rows as Record<string, unknown>[]));
      },
      (error: unknown) => {
        clearTimeout(timer);
        if (settled) return;
        settled = true;
        failed(messageOf(error));
      },
    );
  }

  #endSession(client: pg.Client, reason: string): void {
    this.#lost(client, reason);
    // The socket is dropped, not closed politely: a half-open connection would never answer a Terminate.
    (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
    client.end().catch(() => undefined);
  }
}

/** The lease machine's event for a query's rows. */
function outcomeOf(action: Extract<LeaseAction, { type: "query" }>, rows: Record<string, unknown>[]): LeaseEvent {
  const at = performance.now();
  const row = rows[0];
  switch (action.query) {
    case "acquire": {
      if (row === undefined) return { kind: "query-failed", at, query: "acquire", reason: "acquire_lease() returned no row" };
      const common = { at, generation: BigInt(row.generation as string), serverNow: row.server_now as number, expiresAt: row.expires_at as number };
      return row.outcome === "acquired"
        ? { kind: "acquired", ...common, backendPid: row.backend_pid as number }
        : { kind: "busy", ...common, holder: (row.holder as string | null) ?? "nobody" };
    }
    case "renew":
      return row === undefined
        ? { kind: "renew-rejected", at, generation: action.generation }
        : { kind: "renewed", at, generation: BigInt(row.generation as string), serverNow: row.server_now as number, expiresAt: row.expires_at as number, backendPid: row.backend_pid as number };
    case "release":
      // No row: the lease was not this node's any more; either way it is not held here now.
      return { kind: "released", at, generation: action.generation };
  }
}

function logEventOf(event: LeaseLogEvent): LogEvent {
  const generation = event.generation.toString();
  switch (event.event) {
    case "lease-acquired":
    case "lease-released":
      return { event: event.event, worker: event.worker, generation };
    case "leadership-lost":
    case "lease-renewal-failed":
    case "lease-release-failed":
      return { event: event.event, worker: event.worker, generation, reason: event.reason };
  }
}

/** Errors that stop the start (or the postmaster) rather than being tried again. */
function isSetupError(error: unknown): boolean {
  return typeof error === "object" && error !== null && (error as { setup?: unknown }).setup === true;
}

