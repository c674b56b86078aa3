/**
 * The backstop for postmaster death. A worker learns of it at once through its IPC channel, but only when its
 * event loop turns; a worker stuck in synchronous code never would. This thread, with an event loop of its
 * own, holds the read end of a pipe whose only write end is the postmaster's (the runner's file descriptor
 * WATCHDOG_FD): the kernel closes it when the postmaster dies, however it dies, and the thread then ends the
 * process after the same grace that the IPC path gives. It waits in epoll and costs no CPU while idle (a
 * thread that polled the parent pid ten times a second cost an idle worker about 0.1% of a CPU).
 */
import { createRequire } from "node:module";
import type * as WorkerThreads from "node:worker_threads";

/** The runner's descriptor for the postmaster-death pipe: after stdin, stdout, stderr and the IPC channel. */
export const WATCHDOG_FD = 4;

// Plain CommonJS, evaluated in the thread: no loader, no module resolution. Nothing is ever written to the
// pipe; its end ("end" or "close", or an error) means the postmaster is gone.
const SOURCE = `
const { workerData } = require("node:worker_threads");
const { Socket } = require("node:net");
let ending = false;
const gone = () => {
  if (ending) return;
  ending = true;
  setTimeout(() => process.kill(process.pid, "SIGKILL"), workerData.graceMs);
};
const pipe = new Socket({ fd: workerData.fd, readable: true, writable: false });
pipe.on("data", () => undefined);
pipe.on("end", gone);
pipe.on("close", gone);
pipe.on("error", gone);
`;

let started = false;

/** Starts the thread, once per process: a spare starts it at boot, and its worker keeps it. */
export function startOrphanWatchdog(graceMs: number): void {
  if (started) return;
  started = true;
  // Loaded here, not imported: this module is part of the package's core, and a runner whose kernel guard is
  // armed (orphan.ts) never starts the thread; loading node:worker_threads cost each process about 1 ms of CPU.
  const { Worker } = createRequire(import.meta.url)("node:worker_threads") as typeof WorkerThreads;
  const thread = new Worker(SOURCE, { eval: true, workerData: { fd: WATCHDOG_FD, graceMs } });
  // It must never keep a finished worker alive, nor take it down by failing.
  thread.unref();
  thread.on("error", () => undefined);
}
