/**
 * Worker runner processes: forking them, keeping a few warm spares (Node booted, runtime loaded, waiting for
 * a definition, so a launch costs a message and an import rather than a Node start-up), and relaying their
 * output, messages and exits to the postmaster.
 */
import { fork, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { WorkerRef } from "../log.js";
import { isFromRunner, type FromRunner, type ToRunner } from "../runtime/ipc.js";

const FROM_SOURCE = import.meta.url.endsWith(".ts");
/** The runner's entry, beside this one's directory; `.ts` when the postmaster itself runs from source. */
const RUNNER_PATH = fileURLToPath(new URL(`../runtime/bootstrap${FROM_SOURCE ? ".ts" : ".js"}`, import.meta.url));
/**
 * Built, the runner loads TypeScript support itself, after its orphan guard is in place; from source it
 * needs the loader to read its own files.
 */
const EXEC_ARGV = FROM_SOURCE ? ["--import", import.meta.resolve("tsx")] : [];
/** After `exit`, how long to wait for the child's output pipes to drain before reporting the exit. */
const DRAIN_MS = 200;

export interface RunnerEvents {
  message(runner: Runner, message: FromRunner): void;
  output(runner: Runner, stream: "stdout" | "stderr", line: string): void;
  exit(runner: Runner, code: number | null, signal: string | null): void;
}

export class Runner {
  readonly pid: number;
  /** The worker this runner became; undefined while it is a spare. */
  worker: WorkerRef | undefined;
  ready = false;
  exited = false;

  constructor(private readonly child: ChildProcess) {
    if (child.pid === undefined) throw new Error("the runner process has no pid");
    this.pid = child.pid;
  }

  send(message: ToRunner): void {
    if (this.child.connected) this.child.send(message);
  }

  kill(signal: NodeJS.Signals): void {
    try {
      process.kill(this.pid, signal);
    } catch {
      // Already gone: its exit is on its way.
    }
  }
}

export class Runners {
  private readonly spares: Runner[] = [];
  private closed = false;

  constructor(
    private readonly spareCount: number,
    private readonly events: RunnerEvents,
  ) {}

  /** Boots the spares. */
  warm(): void {
    this.replenish();
  }

  /** A runner to become a worker now: a spare if there is one (even one still booting), else a new one. */
  take(): Runner {
    const runner = this.spares.shift() ?? this.fork();
    setImmediate(() => this.replenish());
    return runner;
  }

  /** Stops making spares and ends the idle ones; workers are the postmaster's to stop. */
  close(): void {
    this.closed = true;
    for (const spare of this.spares.splice(0)) spare.kill("SIGKILL");
  }

  private replenish(): void {
    while (!this.closed && this.spares.length < this.spareCount) {
      try {
        this.spares.push(this.fork());
      } catch {
        // Out of processes for now; the next take() forks on demand and reports the failure there.
        return;
      }
    }
  }

  private fork(): Runner {
    const child = fork(RUNNER_PATH, [], {
      execArgv: EXEC_ARGV,
      stdio: ["ignore", "pipe", "pipe", "ipc"],
      serialization: "json",
      // Its own process group: a terminal's Ctrl-C reaches the postmaster alone, which then stops the workers in order.
      detached: true,
    });
    const runner = new Runner(child);
    for (const stream of ["stdout", "stderr"] as const) {
      const source = child[stream];
      if (source === null) continue;
      createInterface({ input: source, crlfDelay: Infinity }).on("line", (line) => this.events.output(runner, stream, line));
    }
    child.on("message", (message: unknown) => {
      if (!isFromRunner(message)) return;
      if (message.t === "ready") runner.ready = true;
      this.events.message(runner, message);
    });
    // A send to a runner that just died fails with EPIPE; its exit is reported below.
    child.on("error", () => undefined);
    child.once("exit", (code, signal) => {
      const report = (): void => {
        if (runner.exited) return;
        runner.exited = true;
        const spare = this.spares.indexOf(runner);
        if (spare >= 0) this.spares.splice(spare, 1);
        this.events.exit(runner, code, signal);
      };
      // Report after the output has drained, so a worker's last lines come before its exit in the log.
      child.once("close", report);
      setTimeout(report, DRAIN_MS).unref();
    });
    return runner;
  }
}
