/** `bgworker status` as a table: the postmaster row, then one row per worker slot (SPEC §7). */
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
