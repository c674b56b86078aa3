import { BackgroundWorker, SignalWakeFlags, Spi } from "bgworker";

export async function heartbeat(): Promise<void> {
  BackgroundWorker.attachSignalHandlers(SignalWakeFlags.SIGTERM);
  while (await BackgroundWorker.waitLatch(10_000)) {
    console.log(`database time: ${await Spi.getOne<string>("select now()::text")}`);
  }
}
