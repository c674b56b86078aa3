/**
 * The phase monitor: one dedicated `pg` connection that asks `select pg_is_in_recovery()` every
 * `pollMs` and reconnects when it cannot. Loss of the server is seen at once through the client's
 * 'error' and 'end' events (an idle backend exits as soon as its postmaster dies or the server stops),
 * not only at the next poll.
 *
 * cannot connect -> starting; connected and in recovery (a hot standby) -> consistent; otherwise -> running.
 */
import pg from "pg";
import type { Phase } from "../status.js";
import type { ConnectionParams, PhaseListener } from "./types.js";

export interface MonitorOptions {
  /** Time between polls, and between connection attempts while the server is away. */
  readonly pollMs?: number;
  /** A connection attempt or a poll that takes longer than this counts as a lost server. */
  readonly timeoutMs?: number;
}

export class PhaseMonitor {
  private readonly pollMs: number;
  private readonly timeoutMs: number;
  private phase: Phase | undefined;
  private client: pg.Client | undefined;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;

  constructor(
    private readonly params: () => ConnectionParams,
    private readonly onPhase: PhaseListener,
    options: MonitorOptions = {},
  ) {
    this.pollMs = options.pollMs ?? 100;
    this.timeoutMs = options.timeoutMs ?? 2000;
  }

  /** The last phase reported, if any. */
  get current(): Phase | undefined {
    return this.phase;
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
      const client = this.client ?? (await this.connect());
      if (client !== undefined && !this.stopped) {
        try {
          const result = await client.query<{ in_recovery: boolean }>("select pg_is_in_recovery() as in_recovery");
          if (this.client === client) {
            const inRecovery = result.rows[0]?.in_recovery === true;
            this.report(inRecovery ? "consistent" : "running", inRecovery ? "server is in recovery (hot standby)" : "server accepts writes");
          }
        } catch (error) {
          this.lost(client, reasonOf(error));
        }
      }
      await this.sleep(this.pollMs);
    }
  }

  /** Opens the monitor's connection; on failure reports `starting` and returns undefined. */
  private async connect(): Promise<pg.Client | undefined> {
    let params: ConnectionParams;
    try {
      params = this.params();
    } catch (error) {
      // e.g. a managed cluster watched before it has started: not there yet, so `starting`.
      this.report("starting", reasonOf(error));
      return undefined;
    }
    const client = new pg.Client({
      host: params.host,
      port: params.port,
      user: params.user,
      database: params.database,
      ...(params.password === undefined ? {} : { password: params.password }),
      application_name: "bgworker phase monitor",
      connectionTimeoutMillis: this.timeoutMs,
      query_timeout: this.timeoutMs,
      keepAlive: true,
    });
    // Handlers first: a pg client with no 'error' listener would crash the process when the server goes away.
    client.on("error", (error: Error) => this.lost(client, reasonOf(error)));
    client.on("end", () => this.lost(client, "connection to the server closed"));
    try {
      await client.connect();
    } catch (error) {
      this.report("starting", reasonOf(error));
      await this.drop(client);
      return undefined;
    }
    if (this.stopped) {
      await this.drop(client);
      return undefined;
    }
    this.client = client;
    return client;
  }

  /** The monitor's connection broke: `starting` now, and reconnect without waiting for the next poll. */
  private lost(client: pg.Client, reason: string): void {
    if (this.client !== client) return; // an old or never-established connection: already accounted for
    this.client = undefined;
    void this.drop(client);
    if (!this.stopped) this.report("starting", `lost the server: ${reason}`);
    this.wake?.();
  }

  private report(phase: Phase, reason: string): void {
    if (this.stopped || phase === this.phase) return;
    this.phase = phase;
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

/** A one-line reason from a pg or network error. */
function reasonOf(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === "string" && code !== "" ? `${error.message} (${code})` : error.message;
  }
  return String(error);
}
