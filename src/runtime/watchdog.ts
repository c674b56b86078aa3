/**
 * The backstop for postmaster death. A worker learns of it at once through its IPC channel, but only when its
 * event loop turns; a worker stuck in synchronous code never would. This thread, with an event loop of its
 * own, checks a few times a second whether the worker's parent is still the postmaster and, once it is not,
 * ends the process after the same grace that the IPC path gives.
 */
import { Worker } from "node:worker_threads";

const CHECK_INTERVAL_MS = 100;

// Plain CommonJS, evaluated in the thread: no loader, no module resolution.
const SOURCE = `
const { workerData } = require("node:worker_threads");
const check = setInterval(() => {
  if (process.ppid === workerData.postmasterPid) return;
  clearInterval(check);
  setTimeout(() => process.kill(process.pid, "SIGKILL"), workerData.graceMs);
}, workerData.intervalMs);
`;

let started = false;

/** Starts the thread, once per process: a spare starts it at boot, and its worker keeps it. */
export function startOrphanWatchdog(postmasterPid: number, graceMs: number): void {
  if (started) return;
  started = true;
  const thread = new Worker(SOURCE, { eval: true, workerData: { postmasterPid, graceMs, intervalMs: CHECK_INTERVAL_MS } });
  // It must never keep a finished worker alive, nor take it down by failing.
  thread.unref();
  thread.on("error", () => undefined);
}
