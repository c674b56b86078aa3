/**
 * Memory of processes and process trees, from /proc: PSS (shared pages divided among the processes that map
 * them, what a tree of processes really costs the machine), USS (the pages only this process maps) and RSS.
 */
import { readFileSync, readdirSync } from "node:fs";

export interface Memory {
  readonly rssKb: number;
  readonly pssKb: number;
  /** Unique set: Private_Clean + Private_Dirty. */
  readonly ussKb: number;
}

export const NO_MEMORY: Memory = { rssKb: 0, pssKb: 0, ussKb: 0 };

/** One process's memory from /proc/PID/smaps_rollup; undefined once it is gone. */
export function memoryOf(pid: number): Memory | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
  } catch {
    return undefined;
  }
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(text)?.[1] ?? Number.NaN);
  return { rssKb: field("Rss"), pssKb: field("Pss"), ussKb: field("Private_Clean") + field("Private_Dirty") };
}

/** How many threads a process runs now (/proc/PID/status), NaN once it is gone. */
export function threadsOf(pid: number): number {
  try {
    return Number(/^Threads:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? Number.NaN);
  } catch {
    return Number.NaN;
  }
}

export function addMemory(a: Memory, b: Memory): Memory {
  return { rssKb: a.rssKb + b.rssKb, pssKb: a.pssKb + b.pssKb, ussKb: a.ussKb + b.ussKb };
}

/** The children of a process, forked by any of its threads. */
function childrenOfAnyThread(pid: number): number[] {
  const out: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const task of tasks) {
    try {
      out.push(...readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number));
    } catch {
      // the thread ended
    }
  }
  return out;
}

/** A process and all its descendants (esbuild's service processes, a runner's children, ...). */
export function treePids(root: number): number[] {
  const pids = [root];
  for (let i = 0; i < pids.length; i++) pids.push(...childrenOfAnyThread(pids[i]!));
  return pids;
}

/** The whole tree's memory, summed, and how many processes it counted. */
export function treeMemory(root: number): Memory & { readonly processes: number } {
  let total = NO_MEMORY;
  let processes = 0;
  for (const pid of treePids(root)) {
    const memory = memoryOf(pid);
    if (memory === undefined) continue;
    total = addMemory(total, memory);
    processes += 1;
  }
  return { ...total, processes };
}

/** MemAvailable of the machine, in kB. */
export function availableKb(): number {
  return Number(/^MemAvailable:\s+(\d+)/m.exec(readFileSync("/proc/meminfo", "utf8"))?.[1] ?? Number.NaN);
}

export const mbOf = (kb: number): number => Math.round((kb / 1024) * 10) / 10;
