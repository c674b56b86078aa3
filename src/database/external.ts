/** A server that somebody else runs, given by URL: watched, never started or stopped. */
import type { Logger } from "../log.js";
import { PhaseMonitor } from "./monitor.js";
import { describeParams, parseDatabaseUrl } from "./options.js";
import type { ConnectionParams, PhaseListener, ServedDatabase } from "./types.js";

export class ExternalDatabase implements ServedDatabase {
  readonly description: string;
  private readonly params: ConnectionParams;
  private monitor: PhaseMonitor | undefined;

  constructor(
    url: string,
    private readonly logger?: Logger,
  ) {
    this.params = parseDatabaseUrl(url);
    this.description = `${describeParams(this.params)} (external)`;
  }

  async start(): Promise<void> {
    // Nothing to start: the phase monitor reports `starting` until the server accepts connections.
  }

  connectionParams(): ConnectionParams {
    return this.params;
  }

  watch(onPhase: PhaseListener): void {
    if (this.monitor !== undefined) throw new Error("the database is already being watched");
    this.monitor = new PhaseMonitor(() => this.params, onPhase, { notice: (message) => this.logger?.log("LOG", message) });
    this.monitor.start();
  }

  /** A server given by URL is reloaded by whoever runs it (`pg_ctl reload`, `SELECT pg_reload_conf()`). */
  async reload(): Promise<boolean> {
    return false;
  }

  async stop(): Promise<void> {
    await this.monitor?.stop();
    this.monitor = undefined;
  }
}
