/**
 * Runs `bgworker start` as a real process for integration tests, reads its JSON log, and makes sure that
 * nothing it started outlives the test.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { processAlive } from "../../src/database/owner.js";
import type { LogRecord } from "../../src/log.js";
import type { TestWorker } from "../fixtures/extension.js";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const CLI = join(ROOT, "dist", "cli", "main.js");
export const TEST_EXTENSION = join(ROOT, "test", "fixtures", "extension.ts");
export const WORKERS_LIBRARY = join(ROOT, "test", "fixtures", "workers.ts");

/** Long enough for a loaded 2-core machine; tests wait for outcomes, never for a fixed time. */
export const PATIENCE_MS = 20_000;

/** A line a test worker printed with `say()`: `{ event, pid, ... }`. */
export type WorkerEvent = { event: string; pid: number; [field: string]: unknown };

export interface StartOptions {
  workers?: TestWorker[];
  extensions?: string[];
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /** Wait for `ready` (default true). */
  ready?: boolean;
}

export class RunningPostmaster {
  readonly records: LogRecord[] = [];
  readonly stdout: string[] = [];
  readonly stderrText: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly dir: string;
  readonly socket: string;
  private listeners = new Set<() => void>();

  constructor(
    readonly child: ChildProcess,
    dir: string,
  ) {
    this.dir = dir;
    this.socket = join(dir, "bgworker.sock");
    this.exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
    createInterface({ input: child.stdout! }).on("line", (line) => {
      this.stdout.push(line);
      this.notify();
    });
    createInterface({ input: child.stderr! }).on("line", (line) => {
      try {
        this.records.push(JSON.parse(line) as LogRecord);
      } catch {
        this.stderrText.push(line);
      }
      this.notify();
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  private notify(): void {
    for (const listener of this.listeners) listener();
  }

  /** Resolves with the first value `probe` returns that is not undefined, re-checked on every new line. */
  async until<T>(what: string, probe: () => T | undefined, timeoutMs = PATIENCE_MS): Promise<T> {
    const found = probe();
    if (found !== undefined) return found;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.listeners.delete(check);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n--- log ---\n${this.transcript()}`));
      }, timeoutMs);
      const check = (): void => {
        const value = probe();
        if (value === undefined) return;
        clearTimeout(timer);
        this.listeners.delete(check);
        resolve(value);
      };
      this.listeners.add(check);
    });
  }

  /** Worker events (`say()` lines), optionally of one kind. */
  events(event?: string): WorkerEvent[] {
    const out: WorkerEvent[] = [];
    for (const record of this.records) {
      if (record.stream !== "stdout") continue;
      try {
        const parsed = JSON.parse(record.message) as WorkerEvent;
        if (event === undefined || parsed.event === event) out.push(parsed);
      } catch {
        // Not one of ours.
      }
    }
    return out;
  }

  /** Waits until there are at least `count` events of this kind (matching `filter`), and returns them. */
  async waitForEvents(event: string, count = 1, filter: (e: WorkerEvent) => boolean = () => true): Promise<WorkerEvent[]> {
    return this.until(`${count} "${event}" event(s)`, () => {
      const events = this.events(event).filter(filter);
      return events.length >= count ? events : undefined;
    });
  }

  async waitForLog(pattern: RegExp, filter: (r: LogRecord) => boolean = () => true): Promise<LogRecord> {
    return this.until(`a log line matching ${pattern}`, () => this.records.find((r) => pattern.test(r.message) && filter(r)));
  }

  logs(pattern: RegExp): LogRecord[] {
    return this.records.filter((r) => pattern.test(r.message));
  }

  /** Every worker pid the log has named. */
  workerPids(): Set<number> {
    const pids = new Set<number>();
    for (const record of this.records) if (record.worker?.pid !== undefined) pids.add(record.worker.pid);
    for (const event of this.events()) pids.add(event.pid);
    pids.delete(this.pid);
    return pids;
  }

  signal(signal: NodeJS.Signals): void {
    process.kill(this.pid, signal);
  }

  transcript(): string {
    return [...this.stderrText, ...this.records.map((r) => JSON.stringify(r))].slice(-60).join("\n");
  }

  /**
   * Fast shutdown if still running, then checks that the postmaster and every worker it ever started are
   * gone. A test that leaves a process behind fails here.
   */
  async close(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.signal("SIGINT");
      const timer = setTimeout(() => this.child.kill("SIGKILL"), PATIENCE_MS);
      await this.exited;
      clearTimeout(timer);
    }
    // Every process this postmaster started runs in its directory: the log's pids and anything else there.
    const leftovers = await waitGone([...new Set([...this.workerPids(), ...processesIn(this.dir)])]);
    for (const pid of leftovers) process.kill(pid, "SIGKILL");
    rmSync(this.dir, { recursive: true, force: true });
    assert.deepEqual(leftovers, [], `worker processes outlived their postmaster: ${leftovers.join(", ")}`);
  }
}

/** True while `pid` runs; a zombie (exited, not yet reaped by its new parent) counts as gone. */
export const alive = processAlive;

/** What a finished child process left: its exit code and everything it printed. */
export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node ARGS...` to completion (SIGKILLed after PATIENCE_MS), capturing its output. */
export async function runNode(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  const child = spawn(process.execPath, args, { cwd: options.cwd ?? ROOT, env: options.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), PATIENCE_MS);
  const code = await new Promise<number | null>((resolve) => child.once("close", (c) => resolve(c)));
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** Polls `probe` until it returns a value, for states that no log line announces (a table, a status row). */
export async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = PATIENCE_MS): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/**
 * How many lines of a text file (a PostgreSQL server's log) match `pattern`; 0 while it does not exist. For
 * negative checks: a window that must hold N more attempts of the postmaster's own (seen in the server's log)
 * proves its decisions were taken, however slow the machine.
 */
export function linesMatching(path: string, pattern: RegExp): number {
  if (!existsSync(path)) return 0;
  return readFileSync(path, "utf8").split("\n").filter((line) => pattern.test(line)).length;
}

/** Pids of the processes (other than this one) whose working directory is `dir`, from /proc. */
export function processesIn(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      if (readlinkSync(`/proc/${pid}/cwd`).startsWith(dir)) pids.push(pid);
    } catch {
      // Gone, or not ours to look at.
    }
  }
  return pids;
}

/** The pids still alive after up to `graceMs`. */
export async function waitGone(pids: number[], graceMs = 3_000): Promise<number[]> {
  const deadline = Date.now() + graceMs;
  let left = pids.filter(alive);
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 25));
    left = left.filter(alive);
  }
  return left;
}

export async function startPostmaster(options: StartOptions = {}): Promise<RunningPostmaster> {
  const dir = mkdtempSync(join(tmpdir(), "bgw-test-"));
  const extensions = options.extensions ?? [TEST_EXTENSION];
  const args = [CLI, "start", ...extensions, "--log-format", "json", "--socket", join(dir, "bgworker.sock"), ...(options.args ?? ["--no-database"])];
  const child = spawn(process.execPath, args, {
    cwd: dir,
    env: { ...process.env, ...options.env, BGW_TEST_WORKERS: JSON.stringify(options.workers ?? []) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const postmaster = new RunningPostmaster(child, dir);
  if (options.ready !== false) {
    await Promise.race([
      postmaster.until("ready", () => (postmaster.stdout.includes("ready") ? true : undefined)),
      postmaster.exited.then(({ code }) => {
        throw new Error(`postmaster exited with code ${code} before ready\n${postmaster.transcript()}`);
      }),
    ]);
  }
  return postmaster;
}
