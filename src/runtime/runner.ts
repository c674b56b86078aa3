/**
 * The worker runner: the program of every worker process (entered through bootstrap.ts). It boots as a warm spare (Node and this runtime
 * loaded), tells the postmaster it is ready, and becomes a worker when it receives a definition: it installs
 * the signal and latch machinery, imports the library, enters the function, and maps the outcome to an exit
 * code (return -> 0, throw -> 1, `process.exit(n)` -> n).
 */
import { takeRole } from "../context.js";
import { RequestChannel } from "../control/channel.js";
import { Launcher } from "../launcher.js";
import type { LogLevel } from "../log.js";
import { attachShmem, denyShmem } from "../shmem/index.js";
import type { FromRunner, StartMessage, ToRunner } from "./ipc.js";
import { Latch } from "./latch.js";
import { dedicatePreopened, librariesSettled, library, packageLoaded, prepare, warmLoader } from "./spare.js";
import { flushCompileCache, forgetRunnerCompileCache } from "./compile-cache.js";
import { guardAgainstOrphaning, shortenOrphanGrace } from "./orphan.js";
import { endOnUncaught, runFunction, WorkerExit, type WorkerEnd } from "./run-function.js";
import { WORKER_SIGNALS } from "./signals.js";
import { WorkerRole } from "./worker-role.js";

const POSTMASTER_GONE = { postmasterGone: true, message: "the postmaster is gone: no background worker can be started" };

/** How long a worker may outlive its postmaster before it ends itself. */
const ORPHAN_GRACE_MS = 500;

function send(message: FromRunner, then?: () => void): void {
  if (process.connected) {
    process.send?.(message, undefined, {}, () => then?.());
  } else {
    then?.();
  }
}

/**
 * Ends the process with `code` once every message sent before has been written to the channel (the
 * postmaster logs the worker's last words before its exit), or at once if the channel is gone.
 */
function exitWorker(code: number): void {
  send({ t: "exiting", code }, () => process.exit(code));
  setTimeout(() => process.exit(code), 200).unref();
}

function log(level: LogLevel, message: string, detail?: string): void {
  send(detail === undefined ? { t: "log", level, message } : { t: "log", level, message, detail });
}

const END: WorkerEnd = { log, exit: exitWorker };

function installSignals(role: WorkerRole): void {
  const { type } = role.start.definition;
  for (const signal of WORKER_SIGNALS) {
    process.on(signal, () => {
      if (role.deliver(signal)) return;
      if (signal === "SIGTERM") {
        role.fatal(`terminating background worker "${type}" due to administrator command`);
      }
      // SIGHUP, SIGINT and SIGCHLD are ignored until attached, as in PostgreSQL.
    });
  }
  process.on("SIGURG", () => role.latch.set());
}

function watchPostmaster(role: WorkerRole): void {
  // A cluster-scoped worker's lease may be taken over as soon as its postmaster's session ends (SPEC §10):
  // it is killed the moment its postmaster dies, with no grace.
  const clustered = role.start.cluster !== null;
  if (clustered) shortenOrphanGrace(1);
  // The IPC channel closes when the postmaster dies, however it dies: no polling.
  process.on("disconnect", () => {
    if (clustered) process.kill(process.pid, "SIGKILL");
    role.latch.stop("postmaster-death");
    setTimeout(() => process.exit(1), ORPHAN_GRACE_MS);
  });
  // A worker whose code never yields to its event loop does not hear the above; the backstop (armed at boot) ends it.
}

async function become(start: StartMessage): Promise<void> {
  const { definition } = start;
  process.title = `bgworker: ${definition.name}`;
  const latch = new Latch();
  // The worker's transport of the request channel: requests out as IPC messages, replies back by id.
  const channel = new RequestChannel((request) => {
    if (process.connected) send({ t: "request", request });
    else channel.lose(POSTMASTER_GONE);
  });
  process.once("disconnect", () => channel.lose(POSTMASTER_GONE));
  process.on("message", (message: ToRunner) => {
    if (message.t === "reply") channel.settle(message.id, message.ok ? { ok: true, result: message.result } : { ok: false, error: message.error });
  });
  let exiting = false;
  const role = new WorkerRole(start, latch, new Launcher(channel), {
    postmasterAlive: () => process.connected && process.ppid === start.postmasterPid && latch.stopReason !== "postmaster-death",
    log,
    fatal(message: string, detail?: string): never {
      // Once: a second SIGTERM (the postmaster's, after the server ended the session) must not log again.
      if (!exiting) {
        exiting = true;
        log("FATAL", message, detail);
        exitWorker(1);
      }
      throw new WorkerExit(1);
    },
    sessionOpened: (backendPid) => send({ t: "session", backendPid }),
  });
  takeRole(role);
  installSignals(role);
  watchPostmaster(role);

  // A worker with access attaches (when any extension requested shared memory at all); one without is told why.
  if (!definition.shmem) denyShmem(definition.name);
  else if (start.shmem !== null) attachShmem(start.shmem);
  await dedicatePreopened(definition.spi ? definition.type : null);

  // Preloaded while this process was a spare, in the common case: then this costs no import.
  await runFunction(definition, () => library(definition.library, start.cwd), () => send({ t: "entered" }), END);
}

/**
 * Makes this process a runner; called once, by bootstrap.ts. A function rather than this module's top-level
 * code: the module is part of the package's core (scripts/bundle.mjs), which every process loads.
 */
export function runRunner(): void {
  // An error nobody caught ends the worker with code 1; so does a failure to become it.
  const endWith = endOnUncaught(END);
  let started = false;
  let firstPrepared!: () => void;
  const prepared = new Promise<void>((resolve) => (firstPrepared = resolve));
  process.on("message", (message: ToRunner) => {
    if (message.t === "prepare" && !started) {
      prepare(message, send);
      firstPrepared();
    }
    if (message.t !== "start" || started) return;
    started = true;
    become(message).catch(endWith);
  });
  // Everything a launch would otherwise pay for, paid while the spare waits (spare.ts): this package's entry
  // point first (the postmaster's core, SPI's driver and the ops modules are loaded on first use), the same file
  // as the library's import when bgworker is installed as a package (or imported by name inside it).
  // "ready" tells the postmaster the spare is fully warm, the libraries of its first preparation included (the
  // pool sends it with the fork; where loading the package takes no turn of the event loop, as on Node 26, the
  // package is loaded before the message is read); a start that comes earlier is served all the same.
  guardAgainstOrphaning(ORPHAN_GRACE_MS, process.ppid);
  forgetRunnerCompileCache();
  void packageLoaded()
    .then(() => warmLoader())
    .then(() => prepared)
    .then(() => librariesSettled())
    .then(() => flushCompileCache())
    .then(() => send({ t: "ready" }));
}
