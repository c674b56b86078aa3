/**
 * The times of a lease (SPEC §10): how often a holder renews, when it gives its worker up, when the worker
 * must be dead, and when the lease expires for everyone else. Pure arithmetic and validation, no clock.
 *
 * Every deadline of the holder is measured from the moment it SENT its last renewal that succeeded, on this
 * host's monotonic clock. The server evaluated that renewal later than it was sent, and set the lease to
 * expire `leaseMs` after its own `now()`; so "sent + x" on this host comes before "server now + x" on the
 * server whatever the two clocks read, as long as they tick at about the same rate. No comparison of this
 * host's clock with the server's is ever made: only durations cross over.
 *
 *   0 (renewal sent) ── renewMs ── ... ── termMs: SIGTERM ── stopMs: SIGKILL ── margin ── leaseMs: expiry
 *
 * - renewMs: the period of renewals (SPEC default 1000).
 * - termMs = 60% of leaseMs: no renewal succeeded for this long, the holder gives the lease up and sends its
 *   worker SIGTERM (`waitLatch` resolves false, "leadership lost"). Two renewal periods must fit before it,
 *   so that one lost renewal never costs the lease (Patroni's rule `loop_wait + 2 * retry_timeout <= ttl`
 *   in spirit).
 * - stopMs = 80% of leaseMs: SIGKILL if the worker is still there.
 * - margin = leaseMs - stopMs = 20% of leaseMs, at least MIN_MARGIN_MS: for SIGKILL to be delivered and the
 *   process to be gone, and for the two clocks' rates to differ (NTP keeps that under 0.05%; 20% is a wide
 *   allowance, because being wrong here means two holders).
 * With the defaults (lease 5000, renew 1000): SIGTERM 3000 ms and SIGKILL 4000 ms after the last good
 * renewal was sent, 1000 ms of margin before any other node may take the lease over.
 */
import { integerOption, invalidOption } from "../option-check.js";

export const DEFAULT_LEASE_MS = 5000;
export const DEFAULT_RENEW_MS = 1000;
/** A lease shorter than this leaves no room for a query round trip and a process's exit. */
export const MIN_LEASE_MS = 500;
export const MAX_LEASE_MS = 3_600_000;
export const MIN_RENEW_MS = 10;
/** The smallest margin between the holder's SIGKILL and the lease's expiry on the server. */
export const MIN_MARGIN_MS = 100;
export const TERM_FRACTION = 0.6;
export const STOP_FRACTION = 0.8;

export interface LeaseTimings {
  /** The lease's time to live, by the server's clock. */
  readonly leaseMs: number;
  /** The period of renewals; also the period at which a node that does not hold the lease tries to take it. */
  readonly renewMs: number;
  /** After the last successful renewal was sent: the holder gives the lease up and sends SIGTERM. */
  readonly termMs: number;
  /** After the last successful renewal was sent: SIGKILL. */
  readonly stopMs: number;
  /** SIGTERM to SIGKILL when the lease is given up on purpose (shutdown, release): the postmaster's. */
  readonly shutdownTimeoutMs: number;
}

/**
 * The timings from `cluster.leaseMs` and `cluster.renewMs` (SPEC §10's options) and the shutdown timeout,
 * checked: a renewal period too long for the lease is refused before anything starts.
 */
export function leaseTimings(options: { readonly leaseMs?: unknown; readonly renewMs?: unknown; readonly shutdownTimeoutMs: number }): LeaseTimings {
  const leaseMs = integerOption("cluster.leaseMs", options.leaseMs ?? DEFAULT_LEASE_MS, MIN_LEASE_MS, MAX_LEASE_MS);
  const renewMs = integerOption("cluster.renewMs", options.renewMs ?? DEFAULT_RENEW_MS, MIN_RENEW_MS, MAX_LEASE_MS);
  const stopMs = Math.min(Math.floor(leaseMs * STOP_FRACTION), leaseMs - MIN_MARGIN_MS);
  const termMs = Math.floor(leaseMs * TERM_FRACTION);
  const timings = { leaseMs, renewMs, termMs, stopMs, shutdownTimeoutMs: options.shutdownTimeoutMs };
  checkTimings(timings);
  return timings;
}

/**
 * The order every lease needs: two renewals before SIGTERM, SIGTERM before SIGKILL, SIGKILL at least
 * MIN_MARGIN_MS before the lease expires. Throws ERR_BGWORKER_INVALID_OPTION naming the broken bound.
 */
export function checkTimings(t: LeaseTimings): void {
  const { leaseMs, renewMs, termMs, stopMs } = t;
  if (2 * renewMs > termMs) {
    const most = Math.floor(termMs / 2);
    throw invalidOption(
      `cluster.renewMs ${renewMs} is too long for cluster.leaseMs ${leaseMs}: two renewals must fit before a holder ` +
        `gives its worker up (${termMs} ms after its last good renewal), so renewMs must be at most ${most}`,
    );
  }
  if (!(termMs < stopMs)) {
    throw invalidOption(`cluster lease: SIGTERM at ${termMs} ms must come before SIGKILL at ${stopMs} ms after the last good renewal`);
  }
  if (leaseMs - stopMs < MIN_MARGIN_MS) {
    throw invalidOption(
      `cluster lease: SIGKILL at ${stopMs} ms leaves ${leaseMs - stopMs} ms before the lease of ${leaseMs} ms expires; ` +
        `at least ${MIN_MARGIN_MS} ms are needed for the worker to be gone before another node may take over`,
    );
  }
}
