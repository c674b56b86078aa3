/** bgworker: PostgreSQL's background workers, for TypeScript. The package's only public entry point. */
export { BackgroundWorkerBuilder } from "./builder.js";
export { BgWorkerStartTime, type Datum } from "./definition.js";
export { BackgroundWorkerStatus, BackgroundWorkerStatusError, NoFreeWorkerSlotError } from "./errors.js";
export { DynamicBackgroundWorker, TerminatingDynamicBackgroundWorker } from "./handle.js";
export type { LogFormat, LogLevel } from "./log.js";
