/** One worker_spi worker's registration, shared by the static workers of `_PG_init` and `worker_spi_launch`. */
import { BackgroundWorkerBuilder, BgWorkerStartTime } from "bgworker";
import { WORKER_LIBRARY } from "./settings.js";

export function workerSpiBuilder(index: number): BackgroundWorkerBuilder {
  return new BackgroundWorkerBuilder(`worker_spi worker ${index}`)
    .setType("worker_spi")
    .setLibrary(WORKER_LIBRARY)
    .setFunction("worker_spi_main")
    .enableSpiAccess()
    .setStartTime(BgWorkerStartTime.RecoveryFinished)
    .setRestartTime(null) // BGW_NEVER_RESTART
    .setArgument(index);
}
