/**
 * Messages on the IPC channel between the postmaster and a worker runner. The channel is also how the
 * worker learns of the postmaster's death: it closes when the postmaster goes, however it goes.
 */
import type { ConnectionParams } from "../database/types.js";
import type { WireRequest } from "../control/protocol.js";
import type { WorkerDefinition } from "../definition.js";
import type { WireError } from "../errors.js";
import type { LogLevel } from "../log.js";
import type { ShmemAttachment } from "../shmem/types.js";
import type { PrepareMessage } from "./spare.js";

/** Everything a runner needs to become a worker. */
export interface StartMessage {
  readonly t: "start";
  readonly definition: WorkerDefinition;
  readonly slot: number;
  readonly generation: number;
  readonly postmasterId: string;
  readonly postmasterPid: number;
  /** The postmaster's working directory: libraries resolve from it. */
  readonly cwd: string;
  /** The served database, for SPI workers. */
  readonly database: ConnectionParams | null;
  /** The shared memory segment, for workers with shared memory access. */
  readonly shmem: ShmemAttachment | null;
  /**
   * A cluster-scoped worker in a cluster (SPEC §10): the cluster's name and the lease generation it runs
   * under (`getFencingToken()`, a decimal string); null for every other worker.
   */
  readonly cluster: { readonly name: string; readonly fencingToken: string } | null;
}

/** A reply to a worker's request (dynamic launches and handle operations from inside a worker). */
export interface ReplyMessage {
  readonly t: "reply";
  readonly id: number;
  readonly ok: boolean;
  readonly result?: unknown;
  readonly error?: WireError;
}

export type ToRunner = StartMessage | ReplyMessage | PrepareMessage;

export type FromRunner =
  /** A spare runner has booted and waits for a definition. */
  | { readonly t: "ready" }
  /** A spare could not preload this library (its top-level code failed); it retires. */
  | { readonly t: "preloadFailed"; readonly library: string }
  /** The worker's function has been entered. */
  | { readonly t: "entered" }
  | { readonly t: "log"; readonly level: LogLevel; readonly message: string; readonly detail?: string }
  /** The worker is about to exit with this code; everything it sent before has been written. */
  | { readonly t: "exiting"; readonly code: number }
  /** The worker opened its database session: the server process id, for `bgworker status` (SPEC §7). */
  | { readonly t: "session"; readonly backendPid: number }
  /** A control-protocol request (dynamic launches and handles from inside a worker); its id is a number. */
  | { readonly t: "request"; readonly request: WireRequest & { readonly id: number } };

export function isFromRunner(value: unknown): value is FromRunner {
  if (typeof value !== "object" || value === null) return false;
  const t = (value as { t?: unknown }).t;
  return t === "ready" || t === "preloadFailed" || t === "entered" || t === "log" || t === "exiting" || t === "request" || t === "session";
}
