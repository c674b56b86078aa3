/**
 * Worker runner processes: forking them, keeping warm spares (Node booted, TypeScript loader warmed, runtime,
 * watchdog, shared memory and the known worker libraries loaded, so that a launch costs a message and a
 * function call), and relaying their output, messages and exits to the postmaster. The pool's size follows
 * demand (spare-policy.ts).
 */
import { availableParallelism } from "node:os";
import { createInterface } from "node:readline";
import type { ConnectionParams } from "../database/types.js";
import type { WorkerDefinition } from "../definition.js";
import { isFromRunner, type FromRunner, type ToRunner } from "../runtime/ipc.js";
import type { PrepareMessage } from "../runtime/spare.js";
import type { ShmemAttachment } from "../shmem/types.js";
import { SparePolicy } from "./spare-policy.js";
import { startRunnerProcess, type RunnerProcess } from "./runner-process.js";
/** After `exit`, how long to wait for the child's output pipes to drain before reporting the exit. */
const DRAIN_MS = 200;
/**
 * After launches take spares, the replacements are started once every launch in progress has entered its
 * function (or exited), or after this long at the latest: a start blocks the postmaster (under a millisecond
 * with posix_spawn, milliseconds with fork(): runner-process.ts) and a new runner's boot takes a CPU for tens
 * of milliseconds, which the launches in progress should not have to share.
 */
const REFILL_DELAY_MS = 1_000;
/** How often the pool's target is reconsidered (it shrinks only after a quiet period). */
const POLICY_TICK_MS = 5_000;
/**
 * How many launches may wait on runners that are still booting. A runner's boot is tens of ms of CPU
 * (Node, the runtime, the library): fifty booting at once on two CPUs share them and all enter
 * late, while booting a few at a time lets the first launches enter at once and the others follow in
 * order, in the same total time. One more than the CPUs covers a boot's waits on the disk and the loader.
 */
export const BOOT_LIMIT = availableParallelism() + 1;

export interface RunnerEvents {
  message(runner: Runner, message: FromRunner): void;
  output(runner: Runner, stream: "stdout" | "stderr", line: string): void;
  exit(runner: Runner, code: number | null, signal: string | null): void;
}

export class Runner {
  readonly pid: number;
  ready = false;
  /** Set when taking this runner left the pool short: it is refilled once this worker has entered. */
  refillOnEntry = false;
  /** Handed a worker before it was ready: counts against BOOT_LIMIT until it has entered (or exited). */
  coldBoot = false;
  exited = false;

  constructor(private readonly child: RunnerProcess) {
    if (child.pid === undefined) throw new Error("the runner process has no pid");
    this.pid = child.pid;
  }

  send(message: ToRunner): void {
    if (this.child.connected) this.child.send(message);
  }

  /** Closes the IPC channel: a spare then exits on its own. */
  disconnect(): void {
    if (this.child.connected) this.child.disconnect();
  }

  kill(signal: NodeJS.Signals): void {
    try {
      process.kill(this.pid, signal);
    } catch {
      // Already gone: its exit is on its way.
    }
  }
}

export interface RunnerPoolOptions {
  /** The least number of spares (the `spareRunners` option); 0 keeps none. */
  readonly spares: number;
  /** The most spares the pool grows to (the `maxSpareRunners` option). */
  readonly maxSpares: number;
  /** Where worker libraries resolve from. */
  readonly cwd: string;
  /** The shared memory segment spares attach to, when there is one; the shell owns it. */
  readonly shmem: () => ShmemAttachment | null;
  /** The served database while it accepts sessions, else null; the shell owns it. */
  readonly database: () => ConnectionParams | null;
  /** Starts a runner process; the default is runner-process.ts's. Tests give a stand-in process. */
  readonly spawnRunner?: () => RunnerProcess;
}

/** A worker waiting for a runner; see `RunnerPool.request`. */
export interface RunnerRequest {
  readonly definition: WorkerDefinition;
  /**
   * A worker that ran before and exits into a restart (its restart time has passed, or a crash-restart):
   * served before launches and never held back by BOOT_LIMIT, so a restart waits for at most one runner's
   * boot, even while a burst of launches or a storm boots runners.
   */
  readonly restart?: boolean;
  /**
   * A static worker's first start: the postmaster's start-up burst, known in advance. Unlike a launch, it
   * says nothing of demand to come, so the pool does not grow when it finds no warm spare: a postmaster with
   * hundreds of static workers would otherwise boot its largest pool while they start, and keep it idle.
   */
  readonly staticStart?: boolean;
  /** The runner for the worker: the caller sends it the worker and it becomes that worker. */
  deliver(runner: Runner): void;
  /** No runner could be had (the fork failed), or the request was withdrawn: the reason. */
  fail(reason: string): void;
  /** Asked before a queued request is served: a reason to withdraw it (the postmaster shuts down), or undefined. */
  withdrawn(): string | undefined;
}

export class RunnerPool {
  private readonly spares: Runner[] = [];
  /** Requests waiting for a warm spare or for a cold boot under BOOT_LIMIT, oldest first. */
  private readonly queue: RunnerRequest[] = [];
  /** RunnerPool handed a worker before they were ready, until they enter. */
  private coldBoots = 0;
  private readonly policy: SparePolicy;
  private readonly libraries = new Set<string>();
  /** Whether any SPI worker was registered or launched: only then do spares open a session ahead of time. */
  private spiSeen = false;
  private closed = false;
  /** Launches whose runner has not entered its function yet. */
  private launching = 0;
  /** A launch brought news (a library, SPI in use) that the spares have not been told yet. */
  private untold = false;
  private refillTimer: NodeJS.Timeout | undefined;
  private readonly tick: NodeJS.Timeout;

  constructor(
    private readonly options: RunnerPoolOptions,
    private readonly events: RunnerEvents,
  ) {
    this.policy = new SparePolicy(options.spares, options.maxSpares);
    this.tick = setInterval(() => {
      if (this.policy.tick(Date.now())) this.trim();
    }, POLICY_TICK_MS);
    this.tick.unref();
  }

  /** The pool now: how many spares it aims at and may grow to, and the ones it has (booting ones included). */
  get pool(): { target: number; max: number; pids: number[]; ready: number } {
    return {
      target: this.policy.target,
      max: this.policy.ceiling,
      pids: this.spares.map((spare) => spare.pid),
      ready: this.spares.filter((spare) => spare.ready).length,
    };
  }

  /** Boots the spares. */
  warm(): void {
    this.replenish();
  }

  /**
   * A worker the postmaster knows of (a static one at registration, any one at launch): spares preload its
   * library from now on, and open a database session ahead of time once SPI workers are in use.
   */
  know(definition: WorkerDefinition): void {
    if (this.learn(definition)) this.broadcast();
  }

  /** Records what a definition tells the pool; true when the spares should hear of it. */
  private learn(definition: WorkerDefinition): boolean {
    const newLibrary = !this.libraries.has(definition.library);
    const newSpi = definition.spi && !this.spiSeen;
    if (!newLibrary && !newSpi) return false;
    this.libraries.add(definition.library);
    if (definition.spi) this.spiSeen = true;
    return true;
  }

  /**
   * What spares prepare for has changed (the segment was created or re-created after a crash-restart, the
   * database came or went): tell them.
   */
  preparationChanged(): void {
    this.broadcast();
  }

  /**
   * A runner for `definition`'s worker: a warm spare if there is one, else a booting or new one while fewer
   * than BOOT_LIMIT launches wait on boots, else the first of those to come free, in the order asked. The
   * pool is refilled once the launches in progress have entered their function.
   */
  request(request: RunnerRequest): void {
    // The spares hear of a new library with the refill, after this launch: importing it now would take CPU
    // from the launch, which imports it too.
    if (this.learn(request.definition)) this.untold = true;
    if (request.staticStart !== true && !this.spares.some((spare) => spare.ready)) this.policy.missed(Date.now());
    if (request.restart === true) {
      // After the restarts already waiting, before every launch.
      const firstLaunch = this.queue.findIndex((queued) => queued.restart !== true);
      this.queue.splice(firstLaunch < 0 ? this.queue.length : firstLaunch, 0, request);
    } else {
      this.queue.push(request);
    }
    this.serve();
  }

  /** Serves queued requests while runners can be had; withdraws the ones that ask to be. */
  reconsider(): void {
    this.serve();
  }

  private serve(): void {
    const failed: { request: RunnerRequest; reason: string }[] = [];
    while (this.queue.length > 0) {
      const request = this.queue[0]!;
      const reason = this.closed ? "the postmaster is shutting down" : request.withdrawn();
      if (reason !== undefined) {
        this.queue.shift();
        failed.push({ request, reason });
        continue;
      }
      const index = this.spares.findIndex((spare) => spare.ready);
      if (index < 0 && this.coldBoots >= BOOT_LIMIT && request.restart !== true) break;
      let runner: Runner;
      try {
        runner = index >= 0 ? this.spares.splice(index, 1)[0]! : (this.spares.shift() ?? this.fork());
      } catch (error) {
        this.queue.shift();
        failed.push({ request, reason: error instanceof Error ? error.message : String(error) });
        continue;
      }
      this.queue.shift();
      if (!runner.ready) {
        runner.coldBoot = true;
        this.coldBoots += 1;
      }
      runner.refillOnEntry = true;
      this.launching += 1;
      this.refillTimer ??= setTimeout(() => this.replenish(), REFILL_DELAY_MS);
      request.deliver(runner);
    }
    // After the loop: a failure is fed to the postmaster's machine, which may ask for runners again.
    for (const { request, reason } of failed) request.fail(reason);
  }

  /** A runner handed a worker before it was ready has entered or exited: the next queued request may boot. */
  private booted(runner: Runner): void {
    if (!runner.coldBoot) return;
    runner.coldBoot = false;
    this.coldBoots -= 1;
    this.serve();
  }

  /** Stops making spares and ends the idle ones; workers are the postmaster's to stop. */
  close(): void {
    this.closed = true;
    clearInterval(this.tick);
    clearTimeout(this.refillTimer);
    for (const spare of this.spares.splice(0)) spare.kill("SIGKILL");
    this.serve();
  }

  private preparation(): PrepareMessage {
    return {
      t: "prepare",
      cwd: this.options.cwd,
      libraries: [...this.libraries],
      shmem: this.options.shmem(),
      database: this.spiSeen ? this.options.database() : null,
    };
  }

  private broadcast(): void {
    const message = this.preparation();
    for (const spare of this.spares) spare.send(message);
  }

  /** A launch in progress has entered (or its process is gone): the last one to do so refills the pool. */
  private launched(runner: Runner, refill: () => void): void {
    if (!runner.refillOnEntry) return;
    runner.refillOnEntry = false;
    this.launching -= 1;
    if (this.launching === 0) refill();
  }

  private replenish(): void {
    clearTimeout(this.refillTimer);
    this.refillTimer = undefined;
    if (this.untold) {
      this.untold = false;
      this.broadcast();
    }
    // Launches still queued take the CPUs first; the pool is refilled once they have entered.
    if (this.queue.length > 0) return;
    while (!this.closed && this.spares.length < this.policy.target) {
      try {
        this.spares.push(this.fork());
      } catch {
        // Out of processes for now; the next take() forks on demand and reports the failure there.
        return;
      }
    }
  }

  /** The target dropped: an idle spare beyond it retires (the newest, least likely to be warm). */
  private trim(): void {
    while (this.spares.length > this.policy.target) this.retire(this.spares[this.spares.length - 1]!);
  }

  private retire(spare: Runner): void {
    const index = this.spares.indexOf(spare);
    if (index >= 0) this.spares.splice(index, 1);
    // A spare ends itself when its channel closes (bootstrap.ts).
    spare.disconnect();
  }

  private fork(): Runner {
    const child = (this.options.spawnRunner ?? startRunnerProcess)();
    const runner = new Runner(child);
    for (const stream of ["stdout", "stderr"] as const) {
      const source = child[stream];
      if (source === null) continue;
      createInterface({ input: source, crlfDelay: Infinity }).on("line", (line) => this.events.output(runner, stream, line));
    }
    child.on("message", (message: unknown) => {
      if (!isFromRunner(message)) return;
      if (message.t === "ready") {
        runner.ready = true;
        // A queued launch may take this spare.
        if (this.spares.includes(runner)) this.serve();
      }
      if (message.t === "preloadFailed") {
        // Its module cache holds the failed evaluation: it retires, and later spares leave the library to the launch.
        this.libraries.delete(message.library);
        if (this.spares.includes(runner)) {
          this.retire(runner);
          this.replenish();
        }
        return;
      }
      this.events.message(runner, message);
      // After the postmaster has told the waiters: starting a runner blocks this thread (runner-process.ts).
      if (message.t === "entered") {
        this.booted(runner);
        this.launched(runner, () => setImmediate(() => this.replenish()));
      }
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
        this.booted(runner);
        this.launched(runner, () => this.replenish());
      };
      // Report after the output has drained, so a worker's last lines come before its exit in the log.
      child.once("close", report);
      setTimeout(report, DRAIN_MS).unref();
    });
    runner.send(this.preparation());
    return runner;
  }
}
