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
    return childrenOf(this.pid).map((pid) => {
      let cmdline = "";
      try {
        cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      } catch {
        // gone
      }
      return { pid, spare: cmdline.includes("bootstrap.js") };
    });
  }

  /**
   * Waits until the pool holds at least one spare and no spare used any CPU for 200 ms: booted, loader
   * warmed, libraries preloaded. The postmaster does not publish its pool; /proc shows it.
   */
  async sparesWarm(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const spares = this.children().filter((child) => child.spare).map((child) => child.pid);
      const before = spares.map(cpuTicks);
      await new Promise((resolve) => setTimeout(resolve, 200));
      if (spares.length > 0 && spares.every((pid, i) => cpuTicks(pid) === before[i])) return;
      if (Date.now() > deadline) return;
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

/** user + system CPU time of a process, in clock ticks (USER_HZ, 100 a second on Linux). */
export function cpuTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
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
