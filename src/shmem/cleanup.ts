/**
 * Removing segments left in /dev/shm by postmasters that died without cleaning up (SIGKILL, power loss
 * of the process, a crash of Node itself). A segment's name holds its creator's pid; its header also holds
 * the creator's start time, which tells a dead creator from a new process that reuses the pid.
 */
import { readdirSync } from "node:fs";
import { processStartTime, readHeader } from "./header.js";
import { DEFAULT_SEGMENT_PREFIX } from "./host.js";
import { shmAddon } from "./native.js";

const SHM_DIR = "/dev/shm";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: unknown }).code === "EPERM"; // exists, owned by someone else
  }
}

/** True when the creator of segment `name` (pid `pid`) is gone; false when unsure. */
function stale(name: string, pid: number): boolean {
  if (!alive(pid)) return true;
  // The pid is in use: by the creator, or by a newer process that was given the same pid.
  const addon = shmAddon();
  let buffer: SharedArrayBuffer;
  try {
    buffer = addon.open(name);
  } catch {
    return false;
  }
  try {
    const header = readHeader(buffer);
    if (header === undefined || header.pid !== pid || header.startTime === 0n) return false;
    const startTime = processStartTime(pid);
    return startTime !== undefined && startTime !== header.startTime;
  } finally {
    addon.unmap(buffer);
  }
}

/**
 * Unlinks the segments named `/<prefix>.<pid>.<n>` whose creating postmaster is no longer alive, and
 * returns their names. The postmaster calls it at start.
 */
export function cleanupStaleSegments(prefix: string = DEFAULT_SEGMENT_PREFIX): string[] {
  let files: string[];
  try {
    files = readdirSync(SHM_DIR);
  } catch {
    return []; // no /dev/shm: not Linux, nothing this function knows how to find
  }
  const removed: string[] = [];
  const addon = shmAddon();
  for (const file of files) {
    if (!file.startsWith(`${prefix}.`)) continue; // prefixes have no dot, so this is the whole prefix
    const match = /^(\d+)\.(\d+)$/.exec(file.slice(prefix.length + 1));
    if (match === null) continue;
    const name = `/${file}`;
    if (stale(name, Number(match[1])) && addon.unlink(name)) removed.push(name);
  }
  return removed;
}
