/**
 * Between groups: wait, for a bounded time, until the machine is quiet, so that a measure that needs a quiet
 * machine does not pay for the tail of the group before it (processes exiting, a server stopping, the load
 * of a burst). Quiet means the whole machine's busy CPU, from /proc/stat over half a second, stays below
 * QUIET_CPUS for two windows in a row. The 1-minute load average decays too slowly to wait for (after a
 * burst it needs minutes), so it is only recorded.
 */
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { round, sleep } from "./stats.js";

/** Busy CPUs (in CPUs, not percent) below which the machine counts as quiet. */
const QUIET_CPUS = 0.3;
const WINDOW_MS = 500;

export interface Quiet {
  readonly before: string;
  /** How long the wait took; `quiet` false when it ended at the bound instead. */
  readonly waitedSeconds: number;
  readonly quiet: boolean;
  /** Busy CPUs over the last window. */
  readonly busyCpus: number;
  readonly loadAverage1: number;
}

function cpuJiffies(): { busy: number; total: number } {
  const fields = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already counted in user)
  const total = fields.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - fields[3]! - fields[4]!, total };
}

const cpuCount = (): number => (readFileSync("/proc/stat", "utf8").match(/^cpu\d+ /gm) ?? [null]).length;

export async function waitQuiet(before: string, maxSeconds: number): Promise<Quiet> {
  const started = Date.now();
  const cpus = cpuCount();
  let quietWindows = 0;
  let busyCpus = Number.NaN;
  let last = cpuJiffies();
  for (;;) {
    await sleep(WINDOW_MS);
    const next = cpuJiffies();
    busyCpus = next.total > last.total ? ((next.busy - last.busy) / (next.total - last.total)) * cpus : 0;
    last = next;
    quietWindows = busyCpus < QUIET_CPUS ? quietWindows + 1 : 0;
    const waited = (Date.now() - started) / 1000;
    if (quietWindows >= 2 || waited >= maxSeconds) {
      return { before, waitedSeconds: round(waited, 1), quiet: quietWindows >= 2, busyCpus: round(busyCpus, 2), loadAverage1: round(loadavg()[0]!, 2) };
    }
  }
}
