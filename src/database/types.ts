/** The served database's public shapes: how the postmaster is told which database to serve, and what it gets back. */
import type { Phase } from "../status.js";

/** What a session (an SPI worker, the phase monitor) connects with. Never printed: it may hold a password. */
export interface ConnectionParams {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly database: string;
  readonly password?: string;
}

/**
 * Which database the postmaster serves:
 * - `"embedded"`: a cluster it manages itself in `<cwd>/.bgworker/pgdata` (created on first run);
 * - `{ pgdata }`: a cluster it manages itself in that directory (created if empty or missing);
 * - `{ url }`: a server that somebody else runs; it is watched, never started or stopped.
 */
export type DatabaseOption = "embedded" | { readonly url: string } | { readonly pgdata: string };

/** Called on every phase change of the served database, with a short reason for the log. */
export type PhaseListener = (phase: Phase, reason: string) => void;

/** A database as the postmaster serves it: started (when managed), watched for its phase, stopped. */
export interface ServedDatabase {
  /** One line for the startup output and the status: which database and how. Never contains a password. */
  readonly description: string;
  /** Managed: creates the cluster on first run, then starts it and waits until it accepts connections.
   * External: nothing to start. */
  start(): Promise<void>;
  /** What SPI workers connect with. For a managed cluster, valid once `start()` has resolved. */
  connectionParams(): ConnectionParams;
  /** Starts the phase monitor; `onPhase` hears the first phase seen, then every change. */
  watch(onPhase: PhaseListener): void;
  /**
   * `bgworker reload`: a managed cluster re-reads its configuration files (`pg_ctl reload`) and this resolves
   * true; an external server is somebody else's to reload, so nothing happens and it resolves false.
   */
  reload(): Promise<boolean>;
  /** Stops the monitor; a managed cluster is then stopped (`pg_ctl stop -m fast`). An external server is never touched. */
  stop(): Promise<void>;
}
