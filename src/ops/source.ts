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
 * state and restart history, measures launch latency (process handed the worker -> function entered, as
 * seen here), and tells its subscribers about every snapshot that differs from the last.
 */
export class StatusTracker {
  private readonly history = new Map<string, HistoryPoint[]>();
  private readonly startingSince = new Map<string, number>();
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
    // Launches already under way began before we watched: their latency is unknown.
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
      if (measure) this.measureLaunch(key, row, t);
    }
    // A slot reused by another worker, or a row gone: its history goes with it.
    for (const key of this.history.keys()) if (!live.has(key)) this.history.delete(key);
  }

  private measureLaunch(key: string, row: WorkerStatusRow, t: number): void {
    const pidKey = `${key}:${row.pid ?? ""}`;
    if (row.state === "starting" && row.pid !== null) {
      // Bounded: a launch that never reports (its row vanished) must not pin memory forever.
      if (this.startingSince.size > 1024) this.startingSince.clear();
      if (!this.startingSince.has(pidKey)) this.startingSince.set(pidKey, t);
      return;
    }
    const since = this.startingSince.get(pidKey);
    if (since === undefined) return;
    this.startingSince.delete(pidKey);
    if (row.state === "running") for (const listener of this.latencyListeners) listener((t - since) / 1000, row);
  }

  private trim(points: HistoryPoint[], t: number): void {
    const cutoff = t - this.windowMs;
    while (points.length > 1 && (points.length > MAX_POINTS || (points[1] !== undefined && points[1].t < cutoff))) points.shift();
  }
}

function stateOf(row: WorkerStatusRow): unknown[] {
  return [row.slot, row.name, row.pid, row.state, row.restarts, row.lastExit?.at ?? null, row.backoffMs];
}
