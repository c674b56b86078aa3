/**
 * A postmaster as users run it: `node dist/cli/main.js start EXTENSION...` in a plain `node` (no tsx, no
 * NODE_OPTIONS), from the user's project directory, with a control socket that the bench connects to.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync, readdirSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { CLI, type Project } from "./project.js";
import { progress } from "./report.js";
import { now } from "./stats.js";

/** A spare that used no CPU for this long has booted and warmed (no timer of its own wakes it). */
const QUIET_MS = 200;
/** USER_HZ: /proc's CPU times are in these ticks, 100 a second on Linux. */
export const TICKS_PER_SECOND = 100;

export interface LogRecord {
  readonly level?: string;
  readonly message?: string;
  readonly stream?: string;
  readonly detail?: string;
}

export class CliPostmaster {
  readonly socket: string;
  readonly log: LogRecord[] = [];
  private readonly child: ChildProcess;
  private readonly exited: Promise<number | null>;

  private constructor(project: Project, extensions: readonly string[], args: readonly string[]) {
    this.socket = join(project.dir, `pm-${Date.now().toString(36)}.sock`);
    const env = { ...process.env };
    delete env.NODE_OPTIONS;
    this.child = spawn(process.execPath, [CLI, "start", ...extensions, "--socket", this.socket, "--log-format", "json", ...args], {
      cwd: project.dir,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.exited = new Promise((resolve) => this.child.once("exit", (code) => resolve(code)));
    createInterface({ input: this.child.stderr! }).on("line", (line) => {
      let record: LogRecord;
      try {
        record = JSON.parse(line) as LogRecord;
      } catch {
        record = { level: "OUTPUT", message: line };
      }
      this.log.push(record);
      if (record.level === "ERROR" || record.level === "FATAL" || record.level === "PANIC") progress(`postmaster log: ${line}`);
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Starts one and resolves once it printed `ready`. */
  static async start(project: Project, extensions: readonly string[], args: readonly string[] = []): Promise<CliPostmaster> {
    const pm = new CliPostmaster(project, extensions, args);
    await new Promise<void>((resolve, reject) => {
      const lines = createInterface({ input: pm.child.stdout! });
      lines.on("line", (line) => {
        if (line.trim() === "ready") resolve();
      });
      void pm.exited.then((code) => reject(new Error(`bench: the postmaster exited with ${code} before ready: ${pm.log.slice(-5).map((r) => r.message).join(" | ")}`)));
    });
    return pm;
  }

  /** The managed server's port, from the "serving ..." log line. */
  databasePort(): number {
    for (const record of this.log) {
      const match = /^serving .*\(port (\d+),/.exec(record.message ?? "");
      if (match !== null) return Number(match[1]);
    }
    throw new Error("bench: the postmaster serves no managed database");
  }

  /** Resident set size in kB, of the postmaster alone. */
  rssKb(): number {
    return statusField(this.pid, "VmRSS");
  }

  openFds(): number {
    return readdirSync(`/proc/${this.pid}/fd`).length;
  }

  /** The postmaster's children: spares (still running the bootstrap) and workers (titled "bgworker: NAME"). */
  children(): { pid: number; spare: boolean }[] {
    return childrenOf(this.pid).map((pid) => ({ pid, spare: isSpare(pid) }));
  }

  /**
   * Waits until the pool holds at least one spare and no spare used any CPU for QUIET_MS: booted, loader
   * warmed, libraries preloaded. The postmaster does not publish its pool; /proc shows it.
   */
  async sparesWarm(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const spares = this.children().filter((child) => child.spare).map((child) => child.pid);
      const before = spares.map(cpuTicks);
      await new Promise((resolve) => setTimeout(resolve, QUIET_MS));
      if (spares.length > 0 && spares.every((pid, i) => cpuTicks(pid) === before[i])) return;
      if (Date.now() > deadline) return;
    }
  }

  /**
   * Watches the pool until it holds `target` spares, each quiet (no CPU for QUIET_MS: booted and warm, as
   * sparesWarm judges it). Resolves with the moment the last of them went quiet (wall-clock ms, to the
   * watch's 50 ms), their pids, and the CPU each had used by then (its boot); undefined at the timeout.
   * Spares already quiet when the watch begins count from then: `at` is never before the watch's start.
   */
  async poolRefilled(target: number, timeoutMs = 120_000): Promise<{ at: number; pids: number[]; bootCpuMs: number[] } | undefined> {
    const deadline = Date.now() + timeoutMs;
    const seen = new Map<number, { ticks: number; changed: number }>();
    for (;;) {
      const t = now();
      const spares = this.children().filter((child) => child.spare).map((child) => child.pid);
      for (const pid of spares) {
        const ticks = cpuTicks(pid);
        const entry = seen.get(pid);
        if (entry === undefined || entry.ticks !== ticks) seen.set(pid, { ticks, changed: t });
      }
      const states = spares.map((pid) => seen.get(pid)!);
      if (spares.length >= target && states.every((state) => t - state.changed >= QUIET_MS)) {
        return { at: Math.max(...states.map((state) => state.changed)), pids: spares, bootCpuMs: states.map((state) => (state.ticks * 1000) / TICKS_PER_SECOND) };
      }
      if (Date.now() > deadline) return undefined;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGINT");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 20_000);
    await this.exited;
    clearTimeout(timer);
  }
}

export function statusField(pid: number, field: string): number {
  const match = new RegExp(`^${field}:\\s+(\\d+)`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return match === null ? Number.NaN : Number(match[1]);
}

/** Proportional set size in kB: shared pages (Node's binary, libraries) divided among the processes sharing them. */
export function pssKb(pid: number): number {
  const match = /^Pss:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"));
  return match === null ? Number.NaN : Number(match[1]);
}

/** user + system CPU time of a process, in clock ticks (TICKS_PER_SECOND). */
export function cpuTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
}

/**
 * When a process started, in wall-clock ms (to /proc's tick): its start time in ticks since boot (stat field
 * 22) against /proc/uptime. NaN once it is gone.
 */
export function startedAt(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const startTicks = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]);
    const uptimeSeconds = Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]);
    return now() - uptimeSeconds * 1000 + (startTicks * 1000) / TICKS_PER_SECOND;
  } catch {
    return Number.NaN;
  }
}

/** A runner still running the bootstrap: a spare (a worker's process is titled "bgworker: NAME"). */
export function isSpare(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("bootstrap.js");
  } catch {
    return false; // gone
  }
}

export function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

export function exePath(pid: number): string {
  return readlinkSync(`/proc/${pid}/exe`);
}
