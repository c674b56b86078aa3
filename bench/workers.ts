/** Worker functions of the benchmark. Results are printed as one JSON line (the postmaster's log carries them). */
import { BackgroundWorker, SignalWakeFlags, type Datum } from "bgworker";
import { COUNTER, GATE, HITS, PING_PID, PONG_PID, READY } from "./shared.js";

function report(fields: Record<string, unknown>): void {
  console.log(JSON.stringify({ bench: BackgroundWorker.getExtra(), pid: process.pid, ...fields }));
}

async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

/** Launch latency: is Started once entered; waits until terminated. */
export async function idle(): Promise<void> {
  BackgroundWorker.attachSignalHandlers(SignalWakeFlags.SIGTERM);
  while (await BackgroundWorker.waitLatch(null)) {
    // woken for nothing
  }
}

/** Answers every wake-up by setting the pinger's latch, until terminated. */
export async function ponger(): Promise<void> {
  BackgroundWorker.attachSignalHandlers(SignalWakeFlags.SIGTERM);
  PONG_PID.set(process.pid);
  while (await BackgroundWorker.waitLatch(null)) BackgroundWorker.setLatch(PING_PID.get());
}

/** `rounds` latch round trips with the ponger; reports each round trip in microseconds. */
export async function pinger(rounds: Datum): Promise<void> {
  BackgroundWorker.attachSignalHandlers(SignalWakeFlags.SIGTERM);
  PING_PID.set(process.pid);
  while (PONG_PID.get() === 0) await sleep(1);
  const pong = PONG_PID.get();
  const rttUs: number[] = [];
  const n = Number(rounds);
  for (let i = 0; i < n + 20; i++) {
    const t0 = performance.now();
    BackgroundWorker.setLatch(pong);
    if (!(await BackgroundWorker.waitLatch(5_000))) throw new Error("terminated during the ping-pong");
    if (i >= 20) rttUs.push((performance.now() - t0) * 1000); // the first 20 warm up
  }
  report({ rttUs });
}

/** `ops` increments of HITS (extra "atomic") or of COUNTER under exclusive() (extra "lock"), after the gate. */
export async function adder(ops: Datum): Promise<void> {
  const n = Number(ops);
  const lock = BackgroundWorker.getExtra() === "lock";
  HITS.get(); // attach before the gate
  READY.add(1);
  while (GATE.get() === 0) await sleep(0);
  const t0 = performance.now();
  if (lock) {
    for (let i = 0; i < n; i++) COUNTER.exclusive((s) => void (s.count += 1n));
  } else {
    for (let i = 0; i < n; i++) HITS.add(1n);
  }
  report({ ms: performance.now() - t0, ops: n });
}
