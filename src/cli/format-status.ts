/**
 * `bgworker status` as a table: the postmaster row, then one row per worker slot (SPEC §7); and
 * `bgworker status --cluster`: the cluster's nodes and leases (SPEC §10).
 */
import type { ClusterStatus } from "../cluster/shell.js";
import type { LastExit, StatusReport, WorkerStatusRow } from "../status.js";

/** `850ms`, `1.5s`, `2m30s`, `3h5m`, `2d4h`: short, and exact where it matters (restart times). */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return "-";
  if (ms < 1000) return `${Math.floor(ms)}ms`;
  if (ms < 60_000) {
    const seconds = Math.floor(ms / 100) / 10;
    return `${seconds}s`;
  }
  const pair = (big: number, bigUnit: string, small: number, smallUnit: string): string =>
    small === 0 ? `${big}${bigUnit}` : `${big}${bigUnit}${small}${smallUnit}`;
  if (ms < 3_600_000) return pair(Math.floor(ms / 60_000), "m", Math.floor((ms % 60_000) / 1000), "s");
  if (ms < 86_400_000) return pair(Math.floor(ms / 3_600_000), "h", Math.floor((ms % 3_600_000) / 60_000), "m");
  return pair(Math.floor(ms / 86_400_000), "d", Math.floor((ms % 86_400_000) / 3_600_000), "h");
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

function formatExit(exit: LastExit | null, now: number): string {
  if (exit === null) return "-";
  const how = exit.code !== null ? `exit ${exit.code}` : (exit.signal ?? "killed");
  const at = Date.parse(exit.at);
  return Number.isNaN(at) ? `${how} at ${exit.at}` : `${how}, ${formatDuration(Math.max(0, now - at))} ago`;
}

function formatState(row: WorkerStatusRow): string {
  return row.state === "backoff" && row.backoffMs !== null ? `backoff ${formatDuration(row.backoffMs)}` : row.state;
}

function flags(row: WorkerStatusRow): string {
  const set = [row.spi ? "spi" : "", row.shmem ? "shmem" : ""].filter((flag) => flag !== "");
  return set.length === 0 ? "-" : set.join(",");
}

const HEADERS = ["SLOT", "NAME", "TYPE", "PID", "BACKEND", "STATE", "UPTIME", "CPU", "RSS", "START", "RESTART", "RESTARTS", "LAST EXIT", "NOTIFY", "KIND", "FLAGS", "HANDLE"];

function cells(row: WorkerStatusRow, now: number): string[] {
  return [
    String(row.slot),
    row.name,
    row.type,
    row.pid === null ? "-" : String(row.pid),
    row.backendPid === null || row.backendPid === undefined ? "-" : String(row.backendPid),
    formatState(row),
    row.uptimeMs == null ? "-" : formatDuration(row.uptimeMs),
    row.cpuSeconds == null ? "-" : `${row.cpuSeconds.toFixed(2)}s`,
    row.rssBytes == null ? "-" : formatBytes(row.rssBytes),
    row.startTime,
    row.restartTimeMs === null ? "never" : formatDuration(row.restartTimeMs),
    String(row.restarts),
    formatExit(row.lastExit, now),
    row.notifyPid === 0 ? "-" : String(row.notifyPid),
    row.kind,
    flags(row),
    row.handle ?? "-",
  ];
}

/** Left-aligned columns two spaces apart, with no trailing blanks. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join("  ").trimEnd()).join("\n");
}

/** The spare pool: `2 spare runners (2 warm, at most 8, 18.4 MB)`. */
function formatSpares(spares: StatusReport["postmaster"]["spares"]): string {
  const memory = spares.pssBytes === null ? "" : `, ${formatBytes(spares.pssBytes)}`;
  return `${spares.count} spare runner${spares.count === 1 ? "" : "s"} (${spares.ready} warm, at most ${spares.max}${memory})`;
}

/** The whole report as text; `now` (ms since the epoch) dates the "ago" of last exits. */
export function formatStatus(report: StatusReport, now: number): string {
  const pm = report.postmaster;
  // Stopped rows keep their slot's last run on show, but the slot is free for a new worker.
  const used = report.workers.filter((row) => row.state !== "stopped").length;
  const head =
    `postmaster pid ${pm.pid}: phase ${pm.phase}${pm.phaseReason ? ` (${pm.phaseReason})` : ""}, database ${pm.database}, up ${formatDuration(pm.uptimeMs)}, ` +
    `shared memory ${formatBytes(pm.shmemBytes)}, ${used} of ${pm.maxWorkerProcesses} worker slots in use, ${formatSpares(pm.spares)}` +
    (pm.shutdown === null ? "" : `, shutting down (${pm.shutdown})`);
  if (report.workers.length === 0) return `${head}\n(no background workers)`;
  const sorted = [...report.workers].sort((a, b) => a.slot - b.slot);
  return `${head}\n${table([HEADERS, ...sorted.map((row) => cells(row, now))])}`;
}

/**
 * A span of the server's clock for `status --cluster`: `0.4 s`, `59.9 s` (tenths, cut as formatDuration cuts
 * them, since heartbeats and leases are a few seconds), then as formatDuration (`2m30s`, `3h5m`) for a node
 * gone long ago. Never negative: a heartbeat committed just after the status query's `now()` is "0.0 s ago".
 */
export function formatSpan(ms: number): string {
  if (!Number.isFinite(ms)) return "-";
  const positive = Math.max(0, ms);
  return positive < 60_000 ? `${(Math.floor(positive / 100) / 10).toFixed(1)} s` : formatDuration(positive);
}

/** "expires in 3.2 s" or "expired 1.0 s ago", from a lease's expiry and the server's now. */
export function formatExpiry(expiresAt: number, serverNow: number): string {
  const left = expiresAt - serverNow;
  return left > 0 ? `expires in ${formatSpan(left)}` : `expired ${formatSpan(-left)} ago`;
}

const NODE_HEADERS = ["NODE", "HOST", "PID", "LAST HEARTBEAT", "LIVE"];
const LEASE_HEADERS = ["WORKER", "HOLDER", "GENERATION", "LEASE"];

/**
 * `bgworker status --cluster` as text: a head line, every node of the cluster, then every cluster-scoped
 * worker's lease. Every age and expiry is the server's (`serverNow` minus the heartbeat, the expiry minus
 * `serverNow`): no clock of this host is read.
 */
export function formatClusterStatus(status: ClusterStatus): string {
  const head = `cluster ${status.cluster}, as seen by node ${status.nodeId} (times by the database server's clock)`;
  const nodes =
    status.nodes.length === 0
      ? "(no nodes)"
      : table([
          NODE_HEADERS,
          ...status.nodes.map((node) => [node.nodeId, node.host, String(node.pid), `${formatSpan(status.serverNow - node.heartbeatAt)} ago`, node.live ? "yes" : "no"]),
        ]);
  const leases =
    status.leases.length === 0
      ? "(no cluster-scoped worker has held a lease yet)"
      : table([
          LEASE_HEADERS,
          ...status.leases.map((lease) => [lease.worker, lease.holder ?? "—", lease.generation, formatExpiry(lease.expiresAt, status.serverNow)]),
        ]);
  return `${head}\n${nodes}\n\n${leases}`;
}
