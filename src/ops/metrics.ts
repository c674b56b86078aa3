/**
 * Prometheus metrics of one postmaster (`/metrics`), with prom-client. Every value but the launch latency
 * histogram is read from a fresh status snapshot at scrape time, so the figures are never stale.
 * Names and labels are documented in docs/operations.md.
 */
import { constants } from "node:os";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Phase, WorkerState, WorkerStatusRow } from "../status.js";
import type { StatusTracker } from "./source.js";

const WORKER_LABELS = ["slot", "name", "type"] as const;
const STATES: readonly WorkerState[] = ["waiting", "starting", "running", "backoff", "stopped"];
const PHASES: readonly Phase[] = ["starting", "consistent", "running"];

function labels(row: WorkerStatusRow): Record<(typeof WORKER_LABELS)[number], string> {
  return { slot: String(row.slot), name: row.name, type: row.type };
}

/** An exit code as the shell reports it: the code, or 128 + the signal's number for a death by signal. */
export function exitStatus(exit: NonNullable<WorkerStatusRow["lastExit"]>): number {
  if (exit.code !== null) return exit.code;
  const number = exit.signal === null ? undefined : (constants.signals as Record<string, number>)[exit.signal];
  return number === undefined ? -1 : 128 + number;
}

export class OpsMetrics {
  readonly registry = new Registry();

  constructor(tracker: StatusTracker) {
    const registers = [this.registry];
    // One snapshot per scrape, shared by every metric's collect() (each reads /proc once per worker).
    let snapshot: { at: number; report: ReturnType<StatusTracker["refresh"]> } | undefined;
    const report = (): ReturnType<StatusTracker["refresh"]> => {
      if (snapshot === undefined || Date.now() - snapshot.at > 100) snapshot = { at: Date.now(), report: tracker.refresh() };
      return snapshot.report;
    };
    new Gauge({
      name: "bgworker_postmaster_uptime_seconds",
      help: "Seconds since the postmaster started.",
      registers,
      collect() {
        this.set(report().postmaster.uptimeMs / 1000);
      },
    });
    new Gauge({
      name: "bgworker_postmaster_phase",
      help: "The served database's phase: 1 for the current one, 0 for the others.",
      labelNames: ["phase"],
      registers,
      collect() {
        const phase = report().postmaster.phase;
        for (const each of PHASES) this.set({ phase: each }, each === phase ? 1 : 0);
      },
    });
    new Gauge({
      name: "bgworker_shared_memory_bytes",
      help: "Size of the shared memory segment (0 when no extension requested any).",
      registers,
      collect() {
        this.set(report().postmaster.shmemBytes);
      },
    });
    new Gauge({
      name: "bgworker_spare_runners",
      help: "Warm spare runners (booted runners waiting to become workers): warm ones, booting ones, the pool's current target and its ceiling.",
      labelNames: ["kind"],
      registers,
      collect() {
        const { count, ready, target, max } = report().postmaster.spares;
        this.set({ kind: "warm" }, ready);
        this.set({ kind: "booting" }, count - ready);
        this.set({ kind: "target" }, target);
        this.set({ kind: "max" }, max);
      },
    });
    new Gauge({
      name: "bgworker_spare_runners_pss_bytes",
      help: "Memory of the spare runners: the sum of their proportional set sizes (PSS).",
      registers,
      collect() {
        const pss = report().postmaster.spares.pssBytes;
        if (pss !== null) this.set(pss);
      },
    });
    new Gauge({
      name: "bgworker_max_worker_processes",
      help: "Worker slots, shared by static and dynamic workers.",
      registers,
      collect() {
        this.set(report().postmaster.maxWorkerProcesses);
      },
    });
    new Gauge({
      name: "bgworker_worker_state",
      help: "Each worker slot's state: 1 for the current one, 0 for the others.",
      labelNames: [...WORKER_LABELS, "state"],
      registers,
      collect() {
        this.reset();
        for (const row of report().workers) for (const state of STATES) this.set({ ...labels(row), state }, row.state === state ? 1 : 0);
      },
    });
    new Counter({
      name: "bgworker_worker_restarts_total",
      help: "Times the worker in this slot has been restarted.",
      labelNames: WORKER_LABELS,
      registers,
      collect() {
        this.reset();
        for (const row of report().workers) this.inc(labels(row), row.restarts);
      },
    });
    new Gauge({
      name: "bgworker_worker_last_exit_code",
      help: "The worker's last exit code (128 + signal number for a death by signal); absent before its first exit.",
      labelNames: WORKER_LABELS,
      registers,
      collect() {
        this.reset();
        for (const row of report().workers) if (row.lastExit !== null) this.set(labels(row), exitStatus(row.lastExit));
      },
    });
    new Gauge({
      name: "bgworker_worker_uptime_seconds",
      help: "Seconds the worker's current process has been running it; absent when it has no process.",
      labelNames: WORKER_LABELS,
      registers,
      collect() {
        this.reset();
        for (const row of report().workers) if (row.uptimeMs != null) this.set(labels(row), row.uptimeMs / 1000);
      },
    });
    new Counter({
      name: "bgworker_worker_cpu_seconds_total",
      help: "User + system CPU seconds of the worker's current process, read from /proc.",
      labelNames: WORKER_LABELS,
      registers,
      collect() {
        this.reset();
        for (const row of report().workers) if (row.cpuSeconds != null) this.inc(labels(row), row.cpuSeconds);
      },
    });
    new Gauge({
      name: "bgworker_worker_resident_memory_bytes",
      help: "Resident set size of the worker's current process, read from /proc.",
      labelNames: WORKER_LABELS,
      registers,
      collect() {
        this.reset();
        for (const row of report().workers) if (row.rssBytes != null) this.set(labels(row), row.rssBytes);
      },
    });
    const latency = new Histogram({
      name: "bgworker_worker_launch_seconds",
      help: "From a process being handed a worker to the worker's function being entered.",
      labelNames: ["type"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    tracker.onLaunchLatency((seconds, row) => latency.observe({ type: row.type }, seconds));
    // Node's own process metrics (CPU, memory, event loop lag, heap, handles) under their standard names.
    collectDefaultMetrics({ register: this.registry });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
