/** bgworker: PostgreSQL's background workers, for TypeScript. The package's only public entry point. */

import "./node-version.js"; // first: an older Node stops here with one line

// Registering workers
export { BackgroundWorkerBuilder } from "./builder.js";
export { BgWorkerStartTime, type Datum, type WorkerScope } from "./definition.js";

// Inside a worker
export { BackgroundWorker } from "./runtime/worker.js";
export { SignalWakeFlags } from "./runtime/signals.js";
export { Spi, SpiError, spiClient } from "./runtime/spi.js";
export type { RawClient, RawNotification, RawQueryResult } from "./runtime/raw-client.js";

// Dynamic workers and their handles
export { DynamicBackgroundWorker, TerminatingDynamicBackgroundWorker } from "./handle.js";
export { BackgroundWorkerStatus, BackgroundWorkerStatusError, NoFreeWorkerSlotError } from "./errors.js";
export { connect, type PostmasterClient } from "./control/client.js";
export { ProtocolError } from "./control/protocol.js";

// Shared memory
export { PgAtomic, PgLwLock, pgShmemInit } from "./shmem/index.js";
export type {
  ArrayField,
  AtomicType,
  AtomicValue,
  FieldType,
  Layout,
  NotPromise,
  ReadonlySharedArrayView,
  ReadonlyStructValue,
  ScalarType,
  SharedArrayView,
  ShmemStructure,
  StructValue,
  Utf8Field,
} from "./shmem/index.js";

// The postmaster
export { Postmaster, type PostmasterOptions } from "./postmaster/postmaster.js";
export type { RestartBackoff } from "./postmaster/rules.js";
export type { DatabaseOption } from "./database/types.js";
export type { ClusterOption } from "./cluster/options.js";
export type { LogFormat, LogLevel, LogSink } from "./log.js";
export type {
  LastExit,
  Phase,
  PostmasterStatusRow,
  ShutdownMode,
  StatusReport,
  WorkerState,
  WorkerStatusRow,
} from "./status.js";
