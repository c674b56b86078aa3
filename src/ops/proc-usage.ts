/**
 * CPU time and resident memory of a process, read from the OS (Linux `/proc`); null where `/proc` is
 * absent (macOS) or the process is gone.
 */
import fs from "node:fs";

export interface ProcessUsage {
  /** User + system CPU time, in seconds. */
  readonly cpuSeconds: number;
  /** Resident set size, in bytes. */
  readonly rssBytes: number;
}

/** `/proc/PID/stat` counts in USER_HZ, which Linux fixes at 100 for every architecture's user-space ABI. */
const USER_HZ = 100;

/** Parses `/proc/PID/stat`: fields after the `(comm)`, whose name may itself hold spaces and parentheses. */
export function cpuSecondsFromStat(stat: string): number | null {
  const close = stat.lastIndexOf(")");
  if (close < 0) return null;
  // After ")": state(3) ppid(4) ... utime(14) stime(15); index 0 here is field 3.
  const fields = stat.slice(close + 2).split(" ");
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return null;
  return (utime + stime) / USER_HZ;
}

/** Parses `VmRSS:   12345 kB` from `/proc/PID/status` (in kB whatever the page size). */
export function rssBytesFromStatus(status: string): number | null {
  const match = /^VmRSS:\s+([0-9]+) kB$/m.exec(status);
  return match === null ? null : Number(match[1]) * 1024;
}

/** Parses `Pss:   12345 kB` from `/proc/PID/smaps_rollup`: the process's share of the pages it maps. */
export function pssBytesFromSmapsRollup(rollup: string): number | null {
  const match = /^Pss:\s+([0-9]+) kB$/m.exec(rollup);
  return match === null ? null : Number(match[1]) * 1024;
}

/** The summed PSS of `pids` in bytes (a process that is gone counts 0); null where `/proc` cannot tell. */
export function pssBytesOf(pids: readonly number[]): number | null {
  let total = 0;
  for (const pid of pids) {
    try {
      const pss = pssBytesFromSmapsRollup(fs.readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"));
      if (pss === null) return null;
      total += pss;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") return null;
    }
  }
  return total;
}

export function processUsage(pid: number): ProcessUsage | null {
  try {
    const cpuSeconds = cpuSecondsFromStat(fs.readFileSync(`/proc/${pid}/stat`, "utf8"));
    const rssBytes = rssBytesFromStatus(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    if (cpuSeconds === null || rssBytes === null) return null;
    return { cpuSeconds, rssBytes };
  } catch {
    return null;
  }
}

/** A status row with its process's uptime (from `since`), CPU seconds and RSS; null for a slot with no process. */
export function withUsage<T extends { readonly pid: number | null }>(
  row: T,
  since?: number,
  now: number = Date.now(),
): T & { cpuSeconds: number | null; rssBytes: number | null; uptimeMs: number | null } {
  const usage = row.pid === null ? null : processUsage(row.pid);
  return {
    ...row,
    uptimeMs: row.pid === null || since === undefined ? null : Math.max(0, now - since),
    cpuSeconds: usage?.cpuSeconds ?? null,
    rssBytes: usage?.rssBytes ?? null,
  };
}
