/**
 * `connect()`: a process outside the postmaster reaches it through the control socket. The client is a
 * `DynamicLauncher`, so `loadDynamic()` and `DynamicBackgroundWorker` work the same as inside the postmaster.
 */
import net from "node:net";
import path from "node:path";
import { LAUNCH_WITH, type BackgroundWorkerBuilder } from "../builder.js";
import { processRole, setProcessRole } from "../context.js";
import type { WorkerDefinition } from "../definition.js";
import { BackgroundWorkerStatus, BackgroundWorkerStatusError } from "../errors.js";
import { DynamicBackgroundWorker } from "../handle.js";
import { formatHandle, parseHandle, type DynamicLauncher, type HandleRef, type HandleState } from "../launcher.js";
import type { ShutdownMode, StatusReport, WorkerStatusRow } from "../status.js";
import {
  encodeFrame,
  errorFromWire,
  FrameDecoder,
  handleStateFromWire,
  helloResultFromWire,
  launchResultFromWire,
  MAX_FRAME_BYTES,
  MAX_REPLY_BYTES,
  parseReply,
  PROTOCOL_VERSION,
  ProtocolError,
  type HelloResult,
  type WireRequest,
} from "./protocol.js";
import { defaultSocketPath, socketAddress } from "./socket-path.js";

/** How long `connect()` waits for the postmaster's hello before giving up on a hung postmaster. */
const HELLO_TIMEOUT_MS = 10_000;

/** The role a process takes when it connects; `loadDynamic()` finds the launcher here. */
interface ClientRole {
  readonly kind: "client";
  readonly launcher: PostmasterClient;
}

/**
 * What a request gets when the postmaster is gone instead of answering: handle queries and waits resolve
 * with the status PostmasterDied (as PostgreSQL's `GetBackgroundWorkerPid`), a terminate through a handle
 * rejects with that status, anything else rejects with a plain Error.
 */
type OnLost = "postmaster-died" | "status-error" | "reject";

interface Pending {
  readonly resolve: (result: unknown) => void;
  readonly reject: (error: Error) => void;
  readonly onLost: OnLost;
}

/** Every request without its id: the client numbers them. */
type Unnumbered<T> = T extends unknown ? Omit<T, "id"> : never;

/** A connection to a running postmaster (SPEC §5). */
export class PostmasterClient implements DynamicLauncher {
  /** The socket this client is connected to, as an absolute path. */
  readonly socketPath: string;
  /** The postmaster's identity and pid, from its hello. */
  readonly postmaster: HelloResult;
  /** Resolves when the connection has ended, for whatever reason. */
  readonly closed: Promise<void>;
  readonly #socket: net.Socket;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  /** Set when the connection is gone: why, for the errors of later calls. */
  #lost: { reason: "closed-by-client" | "postmaster-gone"; message: string } | undefined;
  /** The last connection-level error the server sent (e.g. before it dropped us). */
  #serverError: string | undefined;

  /** @internal Use `connect()`. */
  constructor(socketPath: string, socket: net.Socket, hello: HelloResult, decoder: FrameDecoder, buffered: string[]) {
    this.socketPath = socketPath;
    this.#socket = socket;
    this.postmaster = hello;
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
    socket.on("data", (chunk: Buffer) => this.#data(decoder.push(chunk)));
    socket.on("error", () => undefined); // reported through "close"
    socket.on("close", () => this.#lose("postmaster-gone"));
    for (const frame of buffered) this.#frame(frame);
    this.#updateRef();
  }

  /** Starts a dynamic worker through this connection (whatever `connect()` was called last). */
  loadDynamic(builder: BackgroundWorkerBuilder): Promise<DynamicBackgroundWorker> {
    return builder[LAUNCH_WITH](this, this.loadDynamic);
  }

  /** A handle from its string (e.g. printed by `bgworker launch`); waits are allowed only to its notify pid's process. */
  attach(handle: string): DynamicBackgroundWorker {
    // The notify pid is the postmaster's to know; it decides who may wait, so an attached handle shows 0.
    return new DynamicBackgroundWorker(parseHandle(handle), 0, this);
  }

  /** The worker rows of SPEC §7. */
  async status(): Promise<WorkerStatusRow[]> {
    return [...(await this.statusReport()).workers];
  }

  /** The worker rows and the postmaster row. */
  async statusReport(): Promise<StatusReport> {
    const result = await this.#request({ op: "status" }, "reject");
    if (typeof result !== "object" || result === null || !Array.isArray((result as StatusReport).workers)) {
      throw new ProtocolError("reply: status is not a status report");
    }
    return result as StatusReport;
  }

  /** Terminates a worker by pid or by handle: SIGTERM if running, unregistered if not started yet. */
  async terminate(target: number | string | HandleRef): Promise<void> {
    let wire: number | string;
    if (typeof target === "number") {
      if (!Number.isInteger(target) || target <= 0) throw new TypeError(`terminate: pid ${target} must be a positive integer`);
      wire = target;
    } else if (typeof target === "string") {
      wire = formatHandle(parseHandle(target));
    } else {
      wire = formatHandle(target);
    }
    await this.#request({ op: "terminate", target: wire }, typeof target === "number" ? "reject" : "status-error");
  }

  /** Asks the postmaster to shut down (default fast, as `pg_ctl stop`); resolves once it has accepted (see `closed` for its exit). */
  async stop(mode: ShutdownMode = "fast"): Promise<void> {
    await this.#request({ op: "stop", mode }, "reject");
  }

  /** Ends the connection. Requests still pending reject; the process may exit afterwards. */
  async close(): Promise<void> {
    if (this.#lost === undefined) {
      this.#lost = { reason: "closed-by-client", message: `the connection to the postmaster on ${this.socketPath} was closed by this client` };
      this.#failPending();
      // Referenced until the close completes, so that `await client.close()` itself is not cut short.
      this.#socket.ref();
      this.#socket.end();
      // A server that does not close its end promptly must not keep this process alive.
      const timer = setTimeout(() => this.#socket.destroy(), 1000);
      timer.unref();
    }
    const role = processRole<ClientRole>();
    if (role?.kind === "client" && role.launcher === this) setProcessRole(undefined);
    await this.closed;
  }

  // --- DynamicLauncher / HandleBackend -------------------------------------------------------------------

  /** @internal Used by `BackgroundWorkerBuilder#loadDynamic()`. */
  async launch(definition: WorkerDefinition, startup?: () => void): Promise<DynamicBackgroundWorker> {
    if (startup !== undefined) {
      throw new TypeError(
        `loadDynamic: background worker "${definition.name}" has a shared memory startup function, which cannot be sent ` +
          `to the postmaster over the control socket; register startup functions in _PG_init`,
      );
    }
    const result = launchResultFromWire(await this.#request({ op: "launch", definition }, "reject"));
    return new DynamicBackgroundWorker(parseHandle(result.handle), result.notifyPid, this);
  }

  /** @internal */
  async state(ref: HandleRef): Promise<HandleState> {
    return handleStateFromWire(await this.#request({ op: "state", handle: formatHandle(ref) }, "postmaster-died"));
  }

  /** @internal The postmaster checks this connection's hello pid against the worker's notify pid. */
  async waitForStartup(ref: HandleRef): Promise<HandleState> {
    return handleStateFromWire(await this.#request({ op: "waitForStartup", handle: formatHandle(ref) }, "postmaster-died"));
  }

  /** @internal */
  async waitForShutdown(ref: HandleRef): Promise<HandleState> {
    return handleStateFromWire(await this.#request({ op: "waitForShutdown", handle: formatHandle(ref) }, "postmaster-died"));
  }

  // --- plumbing ------------------------------------------------------------------------------------------

  #request(request: Unnumbered<WireRequest>, onLost: OnLost): Promise<unknown> {
    if (this.#lost !== undefined) return this.#lostOutcome(onLost);
    const id = this.#nextId++;
    const frame = encodeFrame({ ...request, id } as WireRequest);
    if (Buffer.byteLength(frame) > MAX_FRAME_BYTES) {
      return Promise.reject(new RangeError(`${request.op}: request of ${Buffer.byteLength(frame)} bytes exceeds the protocol's ${MAX_FRAME_BYTES}`));
    }
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, onLost });
      this.#updateRef();
      this.#socket.write(frame);
    });
  }

  /** What a request gets once the connection is gone: handle operations learn that the postmaster died. */
  #lostOutcome(onLost: OnLost): Promise<unknown> {
    const lost = this.#lost;
    if (lost === undefined) throw new Error("connection is not lost");
    if (lost.reason === "postmaster-gone" && onLost === "postmaster-died") {
      return Promise.resolve({ status: BackgroundWorkerStatus.PostmasterDied });
    }
    return Promise.reject(
      lost.reason === "postmaster-gone" && onLost === "status-error"
        ? new BackgroundWorkerStatusError(BackgroundWorkerStatus.PostmasterDied, lost.message)
        : new Error(lost.message),
    );
  }

  #data(events: ReturnType<FrameDecoder["push"]>): void {
    for (const event of events) {
      if ("frame" in event) this.#frame(event.frame);
      else {
        this.#serverError = "oversized" in event ? `reply exceeds ${MAX_REPLY_BYTES} bytes` : "reply is not valid UTF-8";
        this.#socket.destroy();
        return;
      }
    }
  }

  #frame(frame: string): void {
    let reply;
    try {
      reply = parseReply(frame);
    } catch (error) {
      this.#serverError = (error as Error).message;
      this.#socket.destroy();
      return;
    }
    const pending = typeof reply.id === "number" ? this.#pending.get(reply.id) : undefined;
    if (pending === undefined) {
      // A reply to no request: the server reports a connection-level problem, and usually drops us next.
      if (!reply.ok) this.#serverError = reply.error.message;
      return;
    }
    this.#pending.delete(reply.id as number);
    this.#updateRef();
    if (reply.ok) pending.resolve(reply.result);
    else pending.reject(errorFromWire(reply.error));
  }

  #lose(reason: "postmaster-gone"): void {
    if (this.#lost === undefined) {
      const why = this.#serverError === undefined ? "" : `: ${this.#serverError}`;
      this.#lost = { reason, message: `the postmaster on ${this.socketPath} closed the connection${why}` };
    }
    this.#failPending();
    const role = processRole<ClientRole>();
    if (role?.kind === "client" && role.launcher === this) setProcessRole(undefined);
  }

  #failPending(): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const request of pending) this.#lostOutcome(request.onLost).then(request.resolve, request.reject);
  }

  /** The socket keeps the process alive only while an answer is awaited: a forgotten client never hangs it. */
  #updateRef(): void {
    if (this.#pending.size > 0) this.#socket.ref();
    else this.#socket.unref();
  }
}

function connectError(socketPath: string, error: NodeJS.ErrnoException): Error {
  if (error.code === "ENOENT" || error.code === "ECONNREFUSED") return new Error(`no postmaster running on ${socketPath}`);
  if (error.code === "EACCES") return new Error(`cannot connect to the postmaster on ${socketPath}: permission denied`);
  return new Error(`cannot connect to the postmaster on ${socketPath}: ${error.message}`);
}

/**
 * Connects to the postmaster listening on `socketPath` (default `./.bgworker/bgworker.sock`). Afterwards
 * `builder.loadDynamic()` in this process uses this connection, unless the process is a postmaster or a
 * worker (they have their own).
 */
export async function connect(socketPath?: string): Promise<PostmasterClient> {
  const absolute = socketPath === undefined ? defaultSocketPath(process.cwd()) : path.resolve(socketPath);
  const address = socketAddress(absolute);
  const decoder = new FrameDecoder(MAX_REPLY_BYTES);
  const socket = net.createConnection(address);

  const { hello, buffered } = await new Promise<{ hello: HelloResult; buffered: string[] }>((resolve, reject) => {
    const frames: string[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the postmaster on ${absolute} did not answer within ${HELLO_TIMEOUT_MS / 1000} s`));
    }, HELLO_TIMEOUT_MS);
    const finish = (error: Error | undefined, result?: HelloResult): void => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("error", onError);
      socket.off("close", onClose);
      if (error !== undefined || result === undefined) {
        socket.destroy();
        reject(error ?? new Error(`no hello from the postmaster on ${absolute}`));
      } else resolve({ hello: result, buffered: frames });
    };
    const onError = (error: NodeJS.ErrnoException): void => finish(connectError(absolute, error));
    const onClose = (): void => finish(new Error(`the postmaster on ${absolute} closed the connection before its hello`));
    const onData = (chunk: Buffer): void => {
      for (const event of decoder.push(chunk)) {
        if (!("frame" in event)) return finish(new ProtocolError(`the postmaster on ${absolute} sent a malformed hello`));
        frames.push(event.frame);
      }
      const first = frames.shift();
      if (first === undefined) return;
      try {
        const reply = parseReply(first);
        if (!reply.ok) return finish(errorFromWire(reply.error));
        finish(undefined, helloResultFromWire(reply.result));
      } catch (error) {
        finish(error as Error);
      }
    };
    socket.on("error", onError);
    socket.on("close", onClose);
    socket.on("data", onData);
    socket.once("connect", () => socket.write(encodeFrame({ v: PROTOCOL_VERSION, op: "hello", pid: process.pid, id: 0 })));
  });

  const client = new PostmasterClient(absolute, socket, hello, decoder, buffered);
  const kind = processRole<{ kind?: string }>()?.kind;
  // A postmaster or a worker keeps its implicit connection; any other process uses its latest client.
  if (kind === undefined || kind === "client") {
    const role: ClientRole = { kind: "client", launcher: client };
    setProcessRole(role);
  }
  return client;
}
