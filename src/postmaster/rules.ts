/**
 * The postmaster's rules as pure functions: which phase lets a start time run, how an exit is classified,
 * and how long a restart waits. The state machine applies them; keeping them apart keeps each one testable
 * on its own and written once.
 */
import { BgWorkerStartTime } from "../definition.js";
import type { Phase } from "../status.js";

/** PostgreSQL's start-time rule (postmaster.c `bgworker_should_start_now`). */
export function mayStart(startTime: BgWorkerStartTime, phase: Phase): boolean {
  switch (startTime) {
    case BgWorkerStartTime.PostmasterStart:
      return true;
    case BgWorkerStartTime.ConsistentState:
      return phase !== "starting";
    case BgWorkerStartTime.RecoveryFinished:
      return phase === "running";
  }
}

/**
 * How an exit is treated (bgworker.h): 0 is done, 1 is an ordinary failure that the restart time governs,
 * anything else (another code, or death by a signal) is a crash.
 */
export type ExitKind = "done" | "failed" | "crashed";

export function classifyExit(code: number | null, signal: string | null): ExitKind {
  if (signal !== null || code === null) return "crashed";
  if (code === 0) return "done";
  if (code === 1) return "failed";
  return "crashed";
}

/**
 * Restart-storm damping. Restart times are honoured exactly until a worker has failed `failures` times in
 * a row, each within `fastFailureMs` of its start; from then on each restart waits the larger of its restart
 * time and `initialDelayMs` doubled per further fast failure, capped at `maxDelayMs`. A run of
 * `resetAfterMs` or more clears the count.
 */
export interface RestartBackoff {
  readonly failures: number;
  readonly fastFailureMs: number;
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  readonly resetAfterMs: number;
}

export const DEFAULT_RESTART_BACKOFF: RestartBackoff = Object.freeze({
  failures: 5,
  fastFailureMs: 1_000,
  initialDelayMs: 100,
  maxDelayMs: 30_000,
  resetAfterMs: 10_000,
});

/** The fast-failure count after a run of `runMs` that ended in a failure. */
export function nextFastFailures(previous: number, runMs: number, backoff: RestartBackoff): number {
  if (runMs < backoff.fastFailureMs) return previous + 1;
  if (runMs >= backoff.resetAfterMs) return 0;
  // A run between the two bounds neither extends the run of fast failures nor clears it.
  return previous;
}

/** The extra delay storm damping imposes for `fastFailures`, or 0 while the ordinary rule applies. */
export function dampingDelay(fastFailures: number, backoff: RestartBackoff): number {
  if (fastFailures < backoff.failures) return 0;
  const doublings = fastFailures - backoff.failures;
  // 2 ** doublings overflows to Infinity long before it matters; the cap handles both.
  return Math.min(backoff.maxDelayMs, backoff.initialDelayMs * 2 ** doublings);
}
