/**
 * The postmasters of the cluster fault harness: each one is `bgworker start` run by the CLI, in a working
 * directory of its own (its control socket, its spares' cwd), optionally inside a network namespace, with
 * `--log-format json`; its log is read as it comes, so that the harness measures handovers by the
 * postmasters' own timestamps (`lease-acquired`, `lease-released`, `leadership-lost`, `shutdown-requested`).
 * The singleton's process is known from its lines in the shared file (the postmaster logs a worker's start
 * at DEBUG only), and `owns()` checks it is this node's before anything signals it.
 *
 * Every process a node started is found again at the end (every process whose working directory is the
 * node's) and killed by pid if it outlived its postmaster.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { LogRecord } from "../../src/log.js";
import { alive, CLI, processesIn, runNode, waitGone } from "../helpers/postmaster.js";
import { WORKER_NAME } from "./fixtures/names.js";

export const FAULT_EXTENSION = fileURLToPath(new URL("./fixtures/extension.ts", import.meta.url));

/** One of the lease's log events, with its time (the postmaster's clock, ms since the epoch). */
export interface LeaseEvent {
  readonly kind: "lease-acquired" | "lease-released" | "leadership-lost" | "lease-renewal-failed" | "lease-release-failed";
  readonly worker: string;
  readonly generation: bigint;
  readonly at: number;
  readonly reason?: string;
}

export interface NodeOptions {
  /** "A", "B", "C": the node's place; `nodeId` is one incarnation of it. */
  readonly label: string;
  readonly nodeId: string;
  readonly databaseUrl: string;
  /** Cluster name; null: no `--cluster` (the negative test's host-scoped copies). */
  readonly cluster: string | null;
  readonly leaseMs?: number;
  readonly renewMs?: number;
  /** Run inside this network namespace (`ip netns exec`). */
  readonly netns?: string;
  readonly env: NodeJS.ProcessEnv;
}

/** Reads a field of an event's JSON line: under `fields` (src/log.ts), or at the top level. */
function field(record: LogRecord, name: string): unknown {
  const fields = record.fields as Record<string, unknown> | undefined;
  if (fields !== undefined && name in fields) return fields[name];
  return (record as unknown as Record<string, unknown>)[name];
}

function text(value: unknown): string | undefined {
  return typeof value === "string" ? value : typeof value === "number" || typeof value === "bigint" ? String(value) : undefined;
}

export class ClusterNode {
  readonly records: LogRecord[] = [];
  /** Lines that were not JSON (a crash's stack, node's warnings). */
  readonly rawLines: string[] = [];
  readonly stdout: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly socket: string;
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | null = null;

  private constructor(
    readonly options: NodeOptions,
    readonly child: ChildProcess,
    readonly dir: string,
  ) {
    this.socket = join(dir, "bgworker.sock");
    this.exited = new Promise((resolve) =>
      child.once("exit", (code, signal) => {
        this.exitInfo = { code, signal };
        resolve({ code, signal });
      }),
    );
    createInterface({ input: child.stdout! }).on("line", (line) => this.line(line, "stdout"));
    createInterface({ input: child.stderr! }).on("line", (line) => this.line(line, "stderr"));
  }

  /** Starts `bgworker start` for this node and waits for `ready` (or its exit, an error). */
  static async start(options: NodeOptions, timeoutMs = 30_000): Promise<ClusterNode> {
    const dir = mkdtempSync(join(tmpdir(), `bgw-cf-${options.label}-`));
    const args = [CLI, "start", FAULT_EXTENSION, "--database", options.databaseUrl, "--log-format", "json", "--socket", join(dir, "bgworker.sock")];
    if (options.cluster !== null) {
      args.push("--cluster", options.cluster, "--node-id", options.nodeId);
      if (options.leaseMs !== undefined) args.push("--lease-ms", String(options.leaseMs));
      if (options.renewMs !== undefined) args.push("--renew-ms", String(options.renewMs));
    }
    const env: NodeJS.ProcessEnv = { ...process.env, ...options.env, FAULT_NODE: options.nodeId };
    delete env.BGWORKER_SOCKET;
    // `ip netns exec` enters the namespace and execs node in place: the child's pid is the postmaster's.
    const [command, argv] = options.netns === undefined ? [process.execPath, args] : ["ip", ["netns", "exec", options.netns, process.execPath, ...args]];
    const child = spawn(command, argv, { cwd: dir, env, stdio: ["ignore", "pipe", "pipe"] });
    const node = new ClusterNode(options, child, dir);
    const ready = await Promise.race([
      node.until(() => (node.stdout.includes("ready") ? true : undefined), timeoutMs),
      node.exited.then(() => false),
    ]);
    if (ready !== true) {
      await node.close();
      throw new Error(`node ${options.nodeId} did not start (${ready === false ? `exit ${JSON.stringify(node.exitInfo)}` : "no ready"}):\n${node.transcript()}`);
    }
    return node;
  }

  get pid(): number {
    return this.child.pid!;
  }

  get nodeId(): string {
    return this.options.nodeId;
  }

  get label(): string {
    return this.options.label;
  }

  get running(): boolean {
    return this.exitInfo === null;
  }

  private line(line: string, stream: "stdout" | "stderr"): void {
    if (line.startsWith("{")) {
      try {
        this.records.push(JSON.parse(line) as LogRecord);
        return;
      } catch {
        // Not a log line after all.
      }
    }
    if (stream === "stdout") this.stdout.push(line.trim());
    else this.rawLines.push(line);
  }

  /** Polls `probe` every 10 ms until it gives a value, or undefined after `timeoutMs`. */
  async until<T>(probe: () => T | undefined, timeoutMs: number): Promise<T | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = probe();
      if (value !== undefined || Date.now() > deadline) return value;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** The lease's events for the singleton, in log order. */
  leaseEvents(kind?: LeaseEvent["kind"]): LeaseEvent[] {
    const out: LeaseEvent[] = [];
    for (const record of this.records) {
      const event = record.event as string | undefined;
      if (event === undefined || !event.startsWith("lease-") && event !== "leadership-lost") continue;
      if (kind !== undefined && event !== kind) continue;
      const worker = text(field(record, "worker"));
      const generation = text(field(record, "generation"));
      if (worker !== WORKER_NAME || generation === undefined || !/^\d+$/.test(generation)) continue;
      const reason = text(field(record, "reason"));
      out.push({ kind: event as LeaseEvent["kind"], worker, generation: BigInt(generation), at: Date.parse(record.time), ...(reason === undefined ? {} : { reason }) });
    }
    return out;
  }

  /** The first `lease-acquired` of a generation greater than `after`. */
  acquiredAfter(after: bigint): LeaseEvent | undefined {
    return this.leaseEvents("lease-acquired").find((e) => e.generation > after);
  }

  /** When this postmaster logged a shutdown request (`bgworker stop`, a signal). */
  shutdownRequestedAt(): number | undefined {
    const record = this.records.find((r) => r.event === "shutdown-requested");
    return record === undefined ? undefined : Date.parse(record.time);
  }

  /** Whether `pid` is alive and one of this node's processes (its working directory is the node's): never a reused pid. */
  owns(pid: number): boolean {
    if (!alive(pid)) return false;
    try {
      return readlinkSync(`/proc/${pid}/cwd`).startsWith(this.dir);
    } catch {
      return false;
    }
  }

  /** `bgworker stop --mode MODE` through the CLI, as an operator would; resolves once the CLI returns. */
  async stopByCli(mode: "smart" | "fast" | "immediate"): Promise<{ code: number | null; stderr: string }> {
    const run = await runNode([CLI, "stop", "--mode", mode, "--socket", this.socket], { cwd: this.dir });
    return { code: run.code, stderr: run.stderr };
  }

  signal(signal: NodeJS.Signals): void {
    if (this.running) process.kill(this.pid, signal);
  }

  /** Waits for the postmaster's exit; false if it still runs after `timeoutMs`. */
  async waitExit(timeoutMs: number): Promise<boolean> {
    if (!this.running) return true;
    let timer: NodeJS.Timeout | undefined;
    const done = await Promise.race([
      this.exited.then(() => true),
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs))),
    ]);
    clearTimeout(timer);
    return done;
  }

  /**
   * Ends the node: a fast shutdown (SIGINT) if it runs, SIGKILL after `graceMs`; then every process it started
   * (its workers and spares: every process whose working directory is the node's) is waited for and SIGKILLed
   * if left. Pids from the log are not used for that: one that exited long ago may be another process's now.
   * Its directory is removed. Returns the pids that had to be killed. Never throws.
   */
  async close(graceMs = 15_000): Promise<number[]> {
    try {
      if (this.running) {
        // A frozen postmaster would never handle SIGINT.
        process.kill(this.pid, "SIGCONT");
        this.signal("SIGINT");
        if (!(await this.waitExit(graceMs))) {
          this.signal("SIGKILL");
          await this.waitExit(5_000);
        }
      }
    } catch {
      // Gone meanwhile.
    }
    const pids = processesIn(this.dir);
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGCONT"); // a frozen worker cannot die of its watchdog
      } catch {
        // Gone.
      }
    }
    const left = await waitGone(pids, 3_000);
    for (const pid of left) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // Gone.
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
    return left;
  }

  /** The last lines of the log, for an error message. */
  transcript(lines = 40): string {
    return [...this.rawLines, ...this.records.map((r) => `${r.time} ${r.level} ${r.message}`)].slice(-lines).join("\n");
  }
}
