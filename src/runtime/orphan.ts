/**
 * The backstop for postmaster death: however the postmaster dies, a worker that has not ended itself within
 * the grace is killed. A worker learns of the death at once through its IPC channel, but only when its event
 * loop turns; one stuck in synchronous code never would. Where the shared-memory addon is present (Linux),
 * the kernel does it: a parent-death signal arms a timer that delivers SIGKILL (native/orphan.cc), at no cost
 * while the postmaster lives. Elsewhere a small thread watches the postmaster's death pipe (watchdog.ts).
 */
import { shmAddonIfAvailable } from "../shmem/native.js";
import { startOrphanWatchdog } from "./watchdog.js";

let guarded = false;
/** Whether the kernel's timer guards this process (else the watchdog thread does, with its own grace). */
let kernelArmed = false;

/** Guards this process, once; `parentPid` is the postmaster's pid as this process first saw it. */
export function guardAgainstOrphaning(graceMs: number, parentPid: number): void {
  if (guarded) return;
  guarded = true;
  let armed = false;
  try {
    armed = shmAddonIfAvailable()?.armOrphanKill(graceMs) === true;
  } catch {
    // A failed syscall: the thread serves instead.
  }
  kernelArmed = armed;
  if (!armed) return startOrphanWatchdog(graceMs);
  // The parent died before the kernel was asked: no signal will come, so end now, as the grace would.
  if (process.ppid !== parentPid) setTimeout(() => process.kill(process.pid, "SIGKILL"), graceMs).unref();
}

/**
 * Shortens the grace of a process guarded already: a cluster-scoped worker (SPEC §10) must be gone the moment
 * its postmaster dies, because another node takes its lease over as soon as the postmaster's session ends.
 * With the kernel's timer the new grace holds even for a worker stuck in synchronous code; the runtime also
 * ends itself at once when its IPC channel closes.
 */
export function shortenOrphanGrace(graceMs: number): void {
  if (!kernelArmed) return;
  try {
    shmAddonIfAvailable()?.armOrphanKill(graceMs);
  } catch {
    // The grace armed at boot stays.
  }
}
