/**
 * What a request may ask of the postmaster (control/dispatch.ts answers every transport through it). The
 * server owns the socket and the protocol; every decision (slots, the Untracked rule, shutdown) stays with
 * the postmaster's shell and its state machine, which implement this. It is internal: the public
 * `Postmaster` does not expose it.
 */
import type { ClusterStatus } from "../cluster/shell.js";
import type { WorkerDefinition } from "../definition.js";
import type { HandleRef, HandleState } from "../handle-format.js";
import type { ShutdownMode, StatusReport } from "../status.js";
import type { RestartTargetOf } from "./protocol.js";

export interface ControlHandler {
  /** `HandleRef.postmaster` of this run; the hello reply carries it so clients can tell runs apart. */
  readonly postmasterId: string;
  status(): StatusReport;
  /**
   * Registers a dynamic worker. Throws `NoFreeWorkerSlotError` when every slot is taken, an `Error` while
   * shutting down, a `TypeError` for a definition the postmaster cannot run (e.g. SPI without a database).
   */
  launch(definition: WorkerDefinition): HandleRef;
  state(ref: HandleRef): HandleState;
  /** `callerPid` is the client's hello pid; the handler answers Untracked unless it is the notify pid. */
  waitForStartup(ref: HandleRef, callerPid: number): Promise<HandleState>;
  waitForShutdown(ref: HandleRef, callerPid: number): Promise<HandleState>;
  /** A number is a worker's pid: throws `Error("no background worker with pid N")` when there is none. */
  terminate(target: number | HandleRef): void;
  /**
   * A new process now for each worker `target` names, whatever its restart time (`bgworker restart`);
   * returns how many matched. Throws `Error` (ERR_BGWORKER_NO_SUCH_WORKER) when none does.
   */
  restart(target: RestartTargetOf<HandleRef>): number;
  stop(mode: ShutdownMode): void;
  /** SIGHUP to every worker and a managed server reloaded; resolves once the server has been signalled. */
  reload(): Promise<void>;
  /**
   * `bgworker status --cluster` (SPEC §10): the cluster's nodes and leases, read on this node's cluster
   * session by the server's clock. Rejects (ERR_BGWORKER_POSTMASTER_STATE) when the postmaster is not in a
   * cluster. Optional, so that a handler that knows nothing of clusters (the tests' fakes) need not say so:
   * without it the op answers as a postmaster not in a cluster.
   */
  clusterStatus?(): Promise<ClusterStatus>;
  /** The last connection of the process with this pid has closed: cancel its notifications. */
  clientGone(pid: number): void;
}
