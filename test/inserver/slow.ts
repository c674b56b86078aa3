/**
 * An in-server fixture whose module takes BGW_TEST_SLOW_MS (default 3000) to load: its worker's backend is
 * forked long before its function is entered, which is when the worker counts as Started (SPEC §5).
 */
import { BackgroundWorker, SignalWakeFlags } from "bgworker";

await new Promise((resolve) => setTimeout(resolve, Number(process.env["BGW_TEST_SLOW_MS"] ?? 3000)));

/** Logs that it was entered, then waits on its latch until SIGTERM. */
export async function slow(): Promise<void> {
  BackgroundWorker.attachSignalHandlers(SignalWakeFlags.SIGTERM);
  console.log(`slow: ${BackgroundWorker.getName()} entered`);
  while (await BackgroundWorker.waitLatch(null)) {
    // only SIGTERM ends it
  }
  process.exit(1);
}
