/**
 * The Node child of an in-server worker (SPEC §9): the bgworker extension's backend starts it with a socket on
 * fd 3 and sends it the worker's definition. It becomes the worker as the runner does (runtime/runner.ts):
 * the same `WorkerRole`, latch, signals and `BackgroundWorker` API, so the code of SPEC §4 runs unchanged.
 * What differs is the transport: SQL, logs, the connection, latches of other processes and dynamic launches
 * are requests to the backend; signals and latch wake-ups come from the backend as frames.
 */
import { existsSync } from "node:fs";
import { takeRole } from "../context.js";
import type { WorkerDefinition } from "../definition.js";
import { Launcher } from "../launcher.js";
import type { LogLevel } from "../log.js";
import { importFrom } from "../modules.js";
import type { StartMessage } from "../runtime/ipc.js";
import { Latch } from "../runtime/latch.js";
import { endOnUncaught, runFunction, WorkerExit, type WorkerEnd } from "../runtime/run-function.js";
import { ignoreSignals, SignalWakeFlags, WORKER_SIGNALS, type WorkerSignal } from "../runtime/signals.js";
import { WorkerRole } from "../runtime/worker-role.js";
import { installInServerSpi } from "./spi-backend.js";
import { markInServer } from "./mode.js";
import { BackendRequester } from "./requester.js";
import { BackendTransport } from "./transport.js";
import { FrameWriter, type FrameReader } from "./wire.js";

/** Log levels as the frame carries them: the index in this list. */
const LEVELS: readonly LogLevel[] = ["DEBUG", "LOG", "INFO", "NOTICE", "WARNING", "ERROR", "FATAL", "PANIC"];

/** What the backend sends first. */
interface StartFrame {
  readonly definition: WorkerDefinition;
  readonly slot: number;
  readonly generation: number;
  readonly postmasterId: string;
  readonly postmasterPid: number;
  readonly backendPid: number;
  readonly cwd: string;
  readonly database: string;
}

let role: WorkerRole | undefined;
let exiting = false;
let startResolve: ((start: StartFrame) => void) | undefined;
const started = new Promise<StartFrame>((resolve) => {
  startResolve = resolve;
});

const transport = new BackendTransport(onFrame, () => {
  // The backend exited (it ends this process too, by SIGKILL, when it goes first): nothing is left to serve.
  role?.latch.stop("postmaster-death");
  process.exit(1);
});

function onFrame(frame: FrameReader): void {
  switch (frame.type) {
    case "W":
      startResolve?.(JSON.parse(frame.str() ?? "null") as StartFrame);
      return;
    case "l":
      role?.latch.set();
      return;
    case "G": {
      const flag = frame.u8();
      const signal = WORKER_SIGNALS.find((s) => SignalWakeFlags[s] === flag);
      if (signal !== undefined && role !== undefined) role.deliver(signal);
      return;
    }
  }
}

function log(level: LogLevel, message: string, detail?: string): void {
  transport.send(new FrameWriter("L").u8(Math.max(0, LEVELS.indexOf(level))).str(message).str(detail ?? null));
}

/** The worker's stdout and stderr become log lines of the server, one per line. */
function captureOutput(): void {
  for (const stream of [process.stdout, process.stderr]) {
    let partial = "";
    const write = (chunk: unknown, encoding?: unknown, callback?: unknown): boolean => {
      const text = typeof chunk === "string" ? chunk : Buffer.from(chunk as Uint8Array).toString(typeof encoding === "string" ? (encoding as BufferEncoding) : "utf8");
      const lines = (partial + text).split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) log("LOG", line);
      const done = typeof encoding === "function" ? encoding : callback;
      if (typeof done === "function") queueMicrotask(() => (done as () => void)());
      return true;
    };
    stream.write = write as typeof stream.write;
  }
}

function installSignals(worker: WorkerRole): void {
  const { type } = worker.start.definition;
  // Signals sent to this process itself (rather than to its backend) follow the same rules.
  for (const signal of WORKER_SIGNALS) {
    process.on(signal, () => {
      if (worker.deliver(signal)) return;
      if (signal === "SIGTERM") worker.fatal(`terminating background worker "${type}" due to administrator command`);
    });
  }
  // The backend decides what SIGTERM does before the worker attaches it (PostgreSQL's FATAL), so it is told.
  const attached = new Set<WorkerSignal>();
  const attach = worker.attach.bind(worker);
  worker.attach = (signals: Iterable<WorkerSignal>): void => {
    const list = [...signals];
    attach(list);
    for (const signal of list) attached.add(signal);
    let flags = 0;
    for (const signal of attached) flags |= SignalWakeFlags[signal];
    transport.send(new FrameWriter("A").u32(flags));
  };
}

/**
 * `BackgroundWorker.setLatch(pid)` of another worker signals SIGURG to that pid. An in-server worker's pid is
 * its backend's: the request goes to this worker's backend, which signals that worker's Node process (this
 * SIGURG listener) or sets the latch of any other PostgreSQL process with `SetLatch()`. It has no reply, so
 * the worker does not wait on a wake-up of its own: a process that does not exist is ESRCH here, as
 * out-of-server, and a pid of no PostgreSQL process is the backend's WARNING in the server's log.
 */
function routeLatches(worker: WorkerRole): void {
  process.on("SIGURG", () => worker.latch.set());
  const kill = process.kill.bind(process);
  process.kill = ((pid: number, signal?: string | number): true => {
    if (signal !== "SIGURG" || pid === process.pid) return kill(pid, signal);
    if (!existsSync(`/proc/${pid}`)) throw Object.assign(new Error(`kill ESRCH`), { code: "ESRCH", errno: -3, syscall: "kill" });
    transport.send(new FrameWriter("S", 16).u32(pid));
    return true;
  }) as typeof process.kill;
}

function exitWorker(code: number): never {
  exiting = true;
  process.exit(code);
}

const END: WorkerEnd = { log, exit: exitWorker };

async function become(start: StartFrame): Promise<void> {
  const { definition } = start;
  process.title = `bgworker: ${definition.name}`;
  const message: StartMessage = {
    t: "start",
    definition,
    slot: start.slot,
    generation: start.generation,
    postmasterId: start.postmasterId,
    postmasterPid: start.postmasterPid,
    cwd: start.cwd,
    // The session is the backend itself; these name the default database of connectWorkerToSpi().
    database: { host: "in-server", port: 0, user: "", database: start.database },
    shmem: null,
    cluster: null,
  };
  const latch = new Latch();
  const worker = new WorkerRole(message, latch, new Launcher(new BackendRequester(transport)), {
    postmasterAlive: () => !transport.gone && latch.stopReason !== "postmaster-death",
    log,
    fatal(text: string, detail?: string): never {
      if (!exiting) {
        exiting = true;
        // The backend ends the worker with PostgreSQL's FATAL (exit code 1) and reaps this process.
        transport.send(new FrameWriter("F").str(text).str(detail ?? null));
        setTimeout(() => process.exit(1), 1000).unref();
      }
      throw new WorkerExit(1);
    },
    sessionOpened: () => undefined,
  });
  role = worker;
  takeRole(worker);
  installSignals(worker);
  installInServerSpi(transport);
  routeLatches(worker);

  // The backend counts the worker as Started (SPEC §5) from the "N" frame on.
  await runFunction(definition, () => importFrom(definition.library, start.cwd), () => transport.send(new FrameWriter("N")), END);
}

const endWith = endOnUncaught(END);
markInServer();
ignoreSignals(["SIGHUP"]);
captureOutput();
// No TypeScript support up front: importFrom() loads a .ts library as compiled files and installs the module
// hooks only for a library that needs them, so a worker on Node 20 has no loader thread otherwise.
become(await started).catch(endWith);
