/**
 * Starting a runner process: the one place that does, for the pool (runner-pool.ts).
 *
 * Where the addon is present (Linux), a runner is started with posix_spawn(3) (native/spawn.cc), not with
 * child_process.fork(): libuv's fork copies the page tables of the whole postmaster for a child that throws
 * them away at its exec, and the parent (in fork) and the child (in exec) both pay for it, in proportion to
 * the postmaster's memory. For hundreds of workers starting at once that was about a tenth of the CPU of the
 * whole start. Everything else is what fork() gives a runner: the same program, arguments and environment,
 * Node's IPC channel on descriptor 3 (JSON, one message a line, as `serialization: "json"` writes it), its
 * output on pipes, the watchdog's pipe on descriptor 4 and a session of its own. Without the addon (or with
 * an addon built before it could spawn), child_process.fork() serves, as it always has.
 */
import { fork, type ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import { closeSync } from "node:fs";
import { Socket } from "node:net";
import { constants } from "node:os";
import type { Readable } from "node:stream";
import { isMainThread } from "node:worker_threads";
import { entryPath, FROM_SOURCE } from "../package-paths.js";
import { runnerEnvironment } from "../runtime/compile-cache.js";
import type { ToRunner } from "../runtime/ipc.js";
import { WATCHDOG_FD } from "../runtime/watchdog.js";
import { shmAddonIfAvailable, type ShmAddon } from "../shmem/native.js";
import { cache } from "../typescript/compile.js";

/** The runner's entry; `.ts` when the postmaster itself runs from source. */
const RUNNER_PATH = entryPath("runtime/bootstrap");
/**
 * Built, the runner loads TypeScript support itself, after its orphan guard is in place; from source it
 * needs the loader to read its own files.
 */
const EXEC_ARGV = FROM_SOURCE ? ["--import", import.meta.resolve("tsx")] : [];
/** The descriptor of Node's IPC channel in a child (NODE_CHANNEL_FD). */
const CHANNEL_FD = 3;

/**
 * What the pool uses of a runner's process. A ChildProcess is one (the fallback, and the stand-ins that
 * tests give); so is a SpawnedRunner. Events: "message" (a message from the runner), "exit" (code, signal),
 * "close" (exited and every stream ended), "error" (a send that failed).
 */
export interface RunnerProcess {
  readonly pid?: number | undefined;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  readonly connected: boolean;
  send(message: ToRunner): boolean;
  disconnect(): void;
  on(event: "message", listener: (message: unknown) => void): unknown;
  on(event: "error", listener: (error: Error) => void): unknown;
  once(event: "exit", listener: (code: number | null, signal: NodeJS.Signals | null) => void): unknown;
  once(event: "close", listener: () => void): unknown;
}

/** The addon, if it can spawn: one built before spawn() existed cannot. */
type SpawningAddon = Required<Pick<ShmAddon, "pipe" | "socketPair" | "duplicate" | "spawn" | "reap">>;

/**
 * The addon, where it can spawn and this thread can reap: signals reach the main thread only, so a
 * postmaster in a worker thread forks.
 */
function spawningAddon(): SpawningAddon | undefined {
  if (!isMainThread) return undefined;
  const addon = shmAddonIfAvailable();
  const can = addon?.spawn !== undefined && addon.reap !== undefined && addon.pipe !== undefined && addon.socketPair !== undefined && addon.duplicate !== undefined;
  return can ? (addon as SpawningAddon) : undefined;
}

/** Starts a runner: with posix_spawn where the addon can, else with child_process.fork(). */
export function startRunnerProcess(): RunnerProcess {
  // Read at each start, as an inherited environment would be: a change to process.env reaches later runners.
  const env = runnerEnvironment(process.env, cache());
  return spawnNode([...EXEC_ARGV, RUNNER_PATH], env) ?? forkRunner(env);
}

/**
 * `node <args>` started as a runner is (posix_spawn, the channel, the pipes, its own session), or undefined
 * where the addon cannot spawn. Throws if the spawn fails.
 */
export function spawnNode(args: readonly string[], env: NodeJS.ProcessEnv): RunnerProcess | undefined {
  const addon = spawningAddon();
  return addon === undefined ? undefined : SpawnedRunner.start(addon, args, env);
}

/** The fallback: child_process.fork(), with the watchdog's pipe (watchdog.ts) as the fifth descriptor. */
function forkRunner(env: NodeJS.ProcessEnv): ChildProcess {
  const child = fork(RUNNER_PATH, [], {
    execArgv: EXEC_ARGV,
    env,
    // The last one is the watchdog's pipe (watchdog.ts): this end is never written, and closes when this process dies.
    stdio: ["ignore", "pipe", "pipe", "ipc", "pipe"],
    serialization: "json",
    // Its own process group: a terminal's Ctrl-C reaches the postmaster alone, which then stops the workers in order.
    detached: true,
  });
  const deathPipe = child.stdio[WATCHDOG_FD] as Socket | null | undefined;
  deathPipe?.on("error", () => undefined);
  deathPipe?.unref();
  return child;
}

/**
 * Signal numbers to names, as a ChildProcess's exit names them: where two names share a number (SIGABRT and
 * SIGIOT, SIGIO and SIGPOLL), the first in os.constants, which is Node's own.
 */
const SIGNAL_NAMES = new Map<number, NodeJS.Signals>();
for (const [name, number] of Object.entries(constants.signals)) if (!SIGNAL_NAMES.has(number)) SIGNAL_NAMES.set(number, name as NodeJS.Signals);

type ExitListener = (code: number | null, signal: NodeJS.Signals | null) => void;

/** Spawned runners not reaped yet: their pids, and what to tell of each exit. reap() waits for one pid. */
const unreaped = new Map<number, ExitListener>();
let reaping = false;
/**
 * While a spawned runner is unreaped: keeps the event loop alive, as a ChildProcess's process handle does
 * (Node's signal listeners do not), and reaps now and then in case a SIGCHLD never reached the listener (one
 * removed by other code in the process).
 */
let unreapedTimer: NodeJS.Timeout | undefined;
const REAP_BACKSTOP_MS = 5_000;

function reapExited(addon: SpawningAddon): void {
  for (const [pid, exited] of unreaped) {
    let status: [number, null] | [null, number] | undefined;
    try {
      status = addon.reap(pid);
    } catch {
      // ECHILD: reaped elsewhere, which nothing in this process does; the exit is reported without a status.
      unreaped.delete(pid);
      exited(null, null);
      continue;
    }
    if (status === undefined) continue;
    unreaped.delete(pid);
    exited(status[0], status[1] === null ? null : (SIGNAL_NAMES.get(status[1]) ?? null));
  }
  if (unreaped.size === 0) {
    clearInterval(unreapedTimer);
    unreapedTimer = undefined;
  }
}

function track(addon: SpawningAddon, pid: number, exited: ExitListener): void {
  unreaped.set(pid, exited);
  unreapedTimer ??= setInterval(() => reapExited(addon), REAP_BACKSTOP_MS);
}

/** Closes a descriptor this module opened, once: `open` lists the ones still open. */
function closeOnce(open: number[], fd: number): void {
  const index = open.indexOf(fd);
  if (index < 0) return;
  open.splice(index, 1);
  closeSync(fd);
}

/**
 * A runner started with posix_spawn: the ChildProcess that the pool uses, over descriptors of its own. Its
 * "exit" comes from SIGCHLD (the addon's reap), its "close" once it has exited and its output and channel
 * have ended, so that a worker's last lines and messages come before its exit is reported.
 *
 * The channel is read and written through two sockets over one connection, as Node's own channel keeps
 * reading after a failed write: a write to a runner that has just exited fails (EPIPE) and destroys the
 * writer, while the reader goes on to the end of what the runner sent before it exited.
 */
class SpawnedRunner extends EventEmitter implements RunnerProcess {
  readonly stdout: Socket;
  readonly stderr: Socket;
  readonly #reader: Socket;
  readonly #writer: Socket;
  /** The write end of the watchdog's pipe: never written, closed when the runner has exited. */
  #deathPipe: number | null;
  #connected = true;
  #received = "";
  #hasExited = false;
  /** The streams still open (output, errors, the channel's reader): "close" waits for them and for the exit. */
  #open = 3;

  private constructor(
    readonly pid: number,
    descriptors: { stdout: number; stderr: number; reader: number; writer: number; deathPipe: number },
  ) {
    super();
    this.stdout = new Socket({ fd: descriptors.stdout, readable: true, writable: false });
    this.stderr = new Socket({ fd: descriptors.stderr, readable: true, writable: false });
    this.#reader = new Socket({ fd: descriptors.reader, readable: true, writable: false });
    this.#writer = new Socket({ fd: descriptors.writer, readable: false, writable: true });
    this.#deathPipe = descriptors.deathPipe;
    // A read error ends a stream as its end would: what was read so far has been delivered. (A ChildProcess
    // takes a read error on its channel for a disconnect too.)
    for (const stream of [this.stdout, this.stderr, this.#reader]) {
      stream.on("error", () => undefined);
      stream.once("close", () => this.#closed());
    }
    this.#reader.setEncoding("utf8");
    this.#reader.on("data", (chunk: string) => this.#receive(chunk));
    this.#reader.once("close", () => {
      this.#connected = false;
      this.#writer.destroy();
    });
    // A write to a runner that just died fails with EPIPE: reported as a ChildProcess reports it.
    this.#writer.on("error", (error) => this.emit("error", error));
  }

  static start(addon: SpawningAddon, args: readonly string[], env: NodeJS.ProcessEnv): SpawnedRunner {
    const open: number[] = [];
    const opened = <T extends number[]>(fds: T): T => (open.push(...fds), fds);
    let pid: number | undefined;
    try {
      const [stdoutRead, stdoutWrite] = opened(addon.pipe());
      const [stderrRead, stderrWrite] = opened(addon.pipe());
      const [reader, childChannel] = opened(addon.socketPair());
      const [writer] = opened([addon.duplicate(reader)]);
      const [deathRead, deathWrite] = opened(addon.pipe());
      const environment = Object.entries(env).flatMap(([name, value]) => (value === undefined || name.startsWith("NODE_CHANNEL_") ? [] : [`${name}=${value}`]));
      environment.push(`NODE_CHANNEL_FD=${CHANNEL_FD}`, "NODE_CHANNEL_SERIALIZATION_MODE=json");
      // The child's descriptors 0 to 4: no input, output, errors, the channel, the watchdog's pipe (read end).
      const fds = [-1, stdoutWrite, stderrWrite, childChannel, deathRead];
      // Listening before the first spawn: a SIGCHLD that came with no listener would be lost.
      if (!reaping) {
        reaping = true;
        process.on("SIGCHLD", () => reapExited(addon));
      }
      // Its own session, as fork's `detached`: a terminal's Ctrl-C reaches the postmaster alone.
      const started = addon.spawn(process.execPath, [process.execPath, ...args], environment, fds, true);
      pid = started;
      // Reaped whatever happens next; until the runner exists, an exit goes nowhere.
      let runner: SpawnedRunner | undefined;
      track(addon, started, (code, signal) => runner?.exited(code, signal));
      for (const fd of [stdoutWrite, stderrWrite, childChannel, deathRead]) closeOnce(open, fd);
      runner = new SpawnedRunner(started, { stdout: stdoutRead, stderr: stderrRead, reader, writer, deathPipe: deathWrite });
      open.length = 0;
      return runner;
    } catch (error) {
      for (const fd of [...open]) closeOnce(open, fd);
      // Started, but it could not be set up: it ends now, and is reaped as the others are.
      if (pid !== undefined) process.kill(pid, "SIGKILL");
      throw error;
    }
  }

  get connected(): boolean {
    return this.#connected;
  }

  send(message: ToRunner): boolean {
    if (!this.#connected || this.#writer.destroyed) return false;
    return this.#writer.write(`${JSON.stringify(message)}\n`);
  }

  /**
   * Closes the channel, as ChildProcess.disconnect(): the runner sees its "disconnect", and no message of
   * its is delivered after this.
   */
  disconnect(): void {
    if (!this.#connected) return;
    this.#connected = false;
    this.#writer.end();
  }

  /** Called once the runner is reaped. */
  exited(code: number | null, signal: NodeJS.Signals | null): void {
    this.#hasExited = true;
    if (this.#deathPipe !== null) closeSync(this.#deathPipe);
    this.#deathPipe = null;
    // Output nobody reads is drained, so that "close" comes: as a ChildProcess does at its exit.
    for (const stream of [this.stdout, this.stderr]) if (stream.readableFlowing === null) stream.resume();
    this.emit("exit", code, signal);
    this.#closed(0);
  }

  #receive(chunk: string): void {
    // Only the new chunk is searched for the end of a message: a long message comes in many chunks.
    let from = this.#received.length;
    this.#received += chunk;
    let end: number;
    while ((end = this.#received.indexOf("\n", from)) >= 0) {
      const line = this.#received.slice(0, end);
      this.#received = this.#received.slice(end + 1);
      from = 0;
      if (!this.#connected) continue;
      let message: unknown;
      try {
        message = JSON.parse(line);
      } catch {
        continue; // not a message of Node's channel; the runner sends none such
      }
      // Node's own messages (handles, cluster) are not the runner's.
      const command = (message as { cmd?: unknown } | null)?.cmd;
      if (typeof command === "string" && command.startsWith("NODE_")) continue;
      this.emit("message", message);
    }
  }

  #closed(streams = 1): void {
    this.#open -= streams;
    if (this.#open === 0 && this.#hasExited) this.emit("close");
  }
}
