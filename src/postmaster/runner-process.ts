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
/** Node's IPC channel in a child: the descriptor and the serialization its `process.send` uses. */
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
type SpawningAddon = Required<Pick<ShmAddon, "pipe" | "socketPair" | "spawn" | "reap">>;

function spawningAddon(): SpawningAddon | undefined {
  const addon = shmAddonIfAvailable();
  if (addon?.spawn === undefined || addon.reap === undefined || addon.pipe === undefined || addon.socketPair === undefined) return undefined;
  return addon as SpawningAddon;
}

/** Starts a runner: with posix_spawn where the addon can, else with child_process.fork(). */
export function startRunnerProcess(): RunnerProcess {
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

/** Spawned runners not reaped yet, by pid: SIGCHLD asks the addon about each (reap() waits for one pid). */
const unreaped = new Map<number, SpawnedRunner>();
let reaping = false;
/**
 * Keeps the event loop alive while a spawned runner has not been reaped, as a ChildProcess's process handle
 * does: SIGCHLD's listener does not (Node's signal listeners are unref'd), and a runner's pipes may close
 * before its exit is reaped.
 */
let unreapedHold: NodeJS.Timeout | undefined;

function reapExited(addon: SpawningAddon): void {
  for (const [pid, runner] of unreaped) {
    let status: [number, null] | [null, number] | undefined;
    try {
      status = addon.reap(pid);
    } catch {
      // ECHILD: reaped elsewhere, which nothing in this process does; the exit is reported without a status.
      unreaped.delete(pid);
      runner.exited(null, null);
      continue;
    }
    if (status === undefined) continue;
    unreaped.delete(pid);
    runner.exited(status[0], status[1] === null ? null : (SIGNAL_NAMES.get(status[1]) ?? null));
  }
  if (unreaped.size === 0) {
    clearInterval(unreapedHold);
    unreapedHold = undefined;
  }
}

/**
 * A runner started with posix_spawn: the ChildProcess that the pool uses, over descriptors of its own. Its
 * "exit" comes from SIGCHLD (the addon's reap), its "close" once it has exited and its output and channel
 * have ended, so that a worker's last lines and messages come before its exit is reported.
 */
class SpawnedRunner extends EventEmitter implements RunnerProcess {
  readonly stdout: Socket;
  readonly stderr: Socket;
  readonly #channel: Socket;
  /** The write end of the watchdog's pipe: never written, closed when the runner has exited. */
  #deathPipe: number | null;
  #connected = true;
  #received = "";
  #hasExited = false;
  /** The streams still open (output, errors, channel): "close" waits for them and for the exit. */
  #open = 3;

  private constructor(
    readonly pid: number,
    descriptors: { stdout: number; stderr: number; channel: number; deathPipe: number },
  ) {
    super();
    this.stdout = new Socket({ fd: descriptors.stdout, readable: true, writable: false });
    this.stderr = new Socket({ fd: descriptors.stderr, readable: true, writable: false });
    this.#channel = new Socket({ fd: descriptors.channel, readable: true, writable: true });
    this.#deathPipe = descriptors.deathPipe;
    for (const stream of [this.stdout, this.stderr]) {
      // A read error ends the stream as its end would: the output so far has been relayed.
      stream.on("error", () => undefined);
      stream.once("close", () => this.#closed());
    }
    this.#channel.setEncoding("utf8");
    this.#channel.on("data", (chunk: string) => this.#receive(chunk));
    // A write to a runner that just died fails with EPIPE: reported as a ChildProcess reports it.
    this.#channel.on("error", (error) => this.emit("error", error));
    this.#channel.once("close", () => {
      this.#connected = false;
      this.#closed();
    });
  }

  static start(addon: SpawningAddon, args: readonly string[], env: NodeJS.ProcessEnv): SpawnedRunner {
    const made: number[] = [];
    const pair = <T extends [number, number]>(fds: T): T => (made.push(...fds), fds);
    try {
      const [stdoutRead, stdoutWrite] = pair(addon.pipe());
      const [stderrRead, stderrWrite] = pair(addon.pipe());
      const [channel, childChannel] = pair(addon.socketPair());
      const [deathRead, deathWrite] = pair(addon.pipe());
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
      const pid = addon.spawn(process.execPath, [process.execPath, ...args], environment, fds, true);
      for (const fd of [stdoutWrite, stderrWrite, childChannel, deathRead]) closeSync(fd);
      made.length = 0;
      const runner = new SpawnedRunner(pid, { stdout: stdoutRead, stderr: stderrRead, channel, deathPipe: deathWrite });
      unreaped.set(pid, runner);
      unreapedHold ??= setInterval(() => undefined, 2 ** 30);
      return runner;
    } catch (error) {
      for (const fd of made) closeSync(fd);
      throw error;
    }
  }

  get connected(): boolean {
    return this.#connected;
  }

  send(message: ToRunner): boolean {
    if (!this.#connected) return false;
    return this.#channel.write(`${JSON.stringify(message)}\n`);
  }

  /** Closes the channel, as ChildProcess.disconnect(): the runner sees its "disconnect". */
  disconnect(): void {
    if (!this.#connected) return;
    this.#connected = false;
    this.#channel.end();
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
    this.#received += chunk;
    let end: number;
    while ((end = this.#received.indexOf("\n")) >= 0) {
      const line = this.#received.slice(0, end);
      this.#received = this.#received.slice(end + 1);
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
