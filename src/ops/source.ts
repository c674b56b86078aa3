/**
 * What the HTTP server, the metrics and the dashboard need from a postmaster, and nothing more: a status
 * snapshot, a "something changed" feed, and the log's tail. `Postmaster` provides the first two.
 */
import type { StatusReport, WorkerState, WorkerStatusRow } from "../status.js";
import type { LogTail } from "./log-tail.js";

export interface OpsSource {
  status(): StatusReport;
  /** Calls `listener` after every change of state; returns the unsubscribe function. */
  onChange(listener: () => void): () => void;
  readonly logTail: Pick<LogTail, "lines" | "subscribe">;
}

/** One point of a worker's history: from `t` (ms since the epoch) on, it was in `state` with `restarts`. */
export interface HistoryPoint {
  readonly t: number;
  readonly state: WorkerState;
  readonly restarts: number;
}

/** The history of the worker now in each slot (`slot:name`), over the last `windowMs`. */
export type History = Record<string, HistoryPoint[]>;

/** A slot's worker, named stably across restarts (a slot reused by another worker starts a new history). */
export function workerKey(row: Pick<WorkerStatusRow, "slot" | "name">): string {
  return `${row.slot}:${row.name}`;
}

const HOUR_MS = 3_600_000;
/** Enough for a flapping worker over an hour without unbounded memory. */
const MAX_POINTS = 720;

/**
 * Follows a source's changes: coalesces the changes of one tick into one snapshot, records each worker's
 * state and restart history, measures launch latency (process handed the worker -> function entered), and
 * tells its subscribers about every snapshot that differs from the last.
 *
 * Launch latency is measured once per run (a worker key with one pid and restart count) in the first
 * snapshot that shows it running, from the row's own `uptimeMs` (the postmaster's time since it handed the
 * process the worker), so a run that was never seen `starting` (it entered within one coalesced tick) is
 * counted all the same, with its real duration. The snapshot is taken in the microtask after the change that
 * made it running, so its uptime is the latency. Without an uptime it falls back to the time since the run
 * was first seen `starting`.
 */
export class StatusTracker {
  private readonly history = new Map<string, HistoryPoint[]>();
  /** Per worker key: the run whose launch latency has been measured (or was running before we watched). */
  private readonly measured = new Map<string, string>();
  /** Per worker key: the run seen `starting`, and when (for rows without an uptime). */
  private readonly startingSince = new Map<string, { run: string; t: number }>();
  private readonly listeners = new Set<(report: StatusReport) => void>();
  private readonly latencyListeners = new Set<(seconds: number, row: WorkerStatusRow) => void>();
  private readonly unsubscribe: () => void;
  private scheduled = false;
  private lastSignature = "";
  private latest: StatusReport;

  constructor(
    private readonly source: OpsSource,
    private readonly windowMs = HOUR_MS,
    private readonly now: () => number = Date.now,
  ) {
    this.latest = source.status();
    // Runs already running entered before we watched: not measured. Runs still starting are, when they enter.
    this.observe(this.latest, false);
    this.unsubscribe = source.onChange(() => this.schedule());
  }

  /** The latest snapshot (CPU and RSS as of the last change; call `refresh()` for fresh figures). */
  get report(): StatusReport {
    return this.latest;
  }

  refresh(): StatusReport {
    this.latest = this.source.status();
    return this.latest;
  }

  historyOf(): History {
    const cutoff = this.now() - this.windowMs;
    const out: History = {};
    for (const [key, points] of this.history) {
      // Keep the point in force at the window's start, so the chart knows the state it began in.
      const firstInside = points.findIndex((p) => p.t >= cutoff);
      out[key] = firstInside <= 0 ? [...points] : points.slice(firstInside - 1);
    }
    return out;
  }

  subscribe(listener: (report: StatusReport) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Called with each measured launch latency, in seconds. */
  onLaunchLatency(listener: (seconds: number, row: WorkerStatusRow) => void): () => void {
    this.latencyListeners.add(listener);
    return () => this.latencyListeners.delete(listener);
  }

  close(): void {
    this.unsubscribe();
    this.listeners.clear();
    this.latencyListeners.clear();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      const report = this.source.status();
      this.latest = report;
      const signature = JSON.stringify([report.postmaster.phase, report.postmaster.shutdown, report.workers.map(stateOf)]);
      this.observe(report);
      if (signature === this.lastSignature) return;
      this.lastSignature = signature;
      for (const listener of this.listeners) listener(report);
    });
  }

  private observe(report: StatusReport, measure = true): void {
    const t = this.now();
    const live = new Set<string>();
    for (const row of report.workers) {
      const key = workerKey(row);
      live.add(key);
      const points = this.history.get(key) ?? [];
      const last = points.at(-1);
      if (last === undefined || last.state !== row.state || last.restarts !== row.restarts) {
        points.push({ t, state: row.state, restarts: row.restarts });
        this.trim(points, t);
        this.history.set(key, points);
      }
      this.measureLaunch(key, row, t, measure);
    }
    // A slot reused by another worker, or a row gone: its history (and launch bookkeeping) goes with it.
    for (const key of this.history.keys()) if (!live.has(key)) this.history.delete(key);
    for (const key of this.measured.keys()) if (!live.has(key)) this.measured.delete(key);
    for (const key of this.startingSince.keys()) if (!live.has(key)) this.startingSince.delete(key);
  }

  private measureLaunch(key: string, row: WorkerStatusRow, t: number, measure: boolean): void {
    if (row.pid === null) return;
    const run = `${row.pid}:${row.restarts}`;
    if (row.state === "starting") {
      if (this.startingSince.get(key)?.run !== run) this.startingSince.set(key, { run, t });
      return;
    }
    if (row.state !== "running" || this.measured.get(key) === run) return;
    this.measured.set(key, run);
    const starting = this.startingSince.get(key);
    this.startingSince.delete(key);
    if (!measure) return;
    const ms = row.uptimeMs ?? (starting?.run === run ? t - starting.t : undefined);
    if (ms === undefined) return;
    for (const listener of this.latencyListeners) listener(ms / 1000, row);
  }

  private trim(points: HistoryPoint[], t: number): void {
    const cutoff = t - this.windowMs;
    while (points.length > 1 && (points.length > MAX_POINTS || (points[1] !== undefined && points[1].t < cutoff))) points.shift();
  }
}

function stateOf(row: WorkerStatusRow): unknown[] {
  return [row.slot, row.name, row.pid, row.state, row.restarts, row.lastExit?.at ?? null, row.backoffMs];
}
