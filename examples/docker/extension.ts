import { BackgroundWorkerBuilder, BgWorkerStartTime } from "bgworker";

export function _PG_init(): void {
  new BackgroundWorkerBuilder("heartbeat")
    .setLibrary("./worker.ts")
    .setFunction("heartbeat")
    .setStartTime(BgWorkerStartTime.RecoveryFinished)
    .enableSpiAccess()
    .load();
}
