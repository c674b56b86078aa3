/**
 * `connect()`: a process outside the postmaster reaches it through the control socket. `PostmasterClient`
 * is the public front; behind it the socket transport feeds the request channel, and the one launcher
 * puts `loadDynamic()` and handle requests to it, so they work the same as inside the postmaster.
 */
import * as net from "node:net";
import { launchWith, type BackgroundWorkerBuilder } from "../builder.js";
import type { ClusterStatus } from "../cluster/shell.js";
import { leaveRole, processRole, takeRole, type ClientRole } from "../context.js";
import { makeError } from "../errors.js";
import { formatHandle, parseHandle } from "../handle-format.js";
import type { DynamicBackgroundWorker } from "../handle.js";
import { assertNotInServer } from "../inserver/mode.js";
import { Launcher } from "../launcher.js";
import type { ShutdownMode, StatusReport, WorkerStatusRow } from "../status.js";
import { RequestChannel } from "./channel.js";
import {
  clusterStatusFromWire,
  encodeFrame,
  errorFromWire,
  FrameDecoder,
  helloResultFromWire,
  MAX_FRAME_BYTES,
  MAX_REPLY_BYTES,
  parseReply,
  PROTOCOL_VERSION,
  ProtocolError,
  type HelloResult,
} from "./protocol.js";
import { clientSocketPath, socketAddress } from "./socket-path.js";

/** How long `connect()` waits for the postmaster's hello before giving up on a hung postmaster. */
const HELLO_TIMEOUT_MS = 10_000;

/**
 * The socket transport: frames out, replies in, each reply settled on the request channel; the end of the
 * socket is the loss of the postmaster.
 */
class SocketTransport {
  readonly socketPath: string;
  readonly channel: RequestChannel;
  readonly launcher: Launcher;
  readonly closed: Promise<void>;
  readonly #socket: net.Socket;
  /** The last connection-level error the server sent (e.g. before it dropped us). */
  #serverError: string | undefined;
  #closedByClient = false;
  /** This connection's role, while it is the process's connection. */
  role: ClientRole | undefined;

  constructor(socketPath: string, socket: net.Socket, decoder: FrameDecoder, buffered: string[]) {
    this.socketPath = socketPath;
    this.#socket = socket;
    // The socket keeps the process alive only while an answer is awaited: a forgotten client never hangs it.
    this.channel = new RequestChannel(
      (request) => {
        const frame = encodeFrame(request);
        if (Buffer.byteLength(frame) > MAX_FRAME_BYTES) {
          throw makeError(RangeError, "ERR_BGWORKER_PROTOCOL", `${request.op}: request of ${Buffer.byteLength(frame)} bytes exceeds the protocol's ${MAX_FRAME_BYTES}`);
        }
        socket.write(frame);
      },
      (count) => (count > 0 ? socket.ref() : socket.unref()),
    );
    this.launcher = new Launcher(this.channel);
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
    socket.on("data", (chunk: Buffer) => this.#data(decoder.push(chunk)));
    socket.on("error", () => undefined); // reported through "close"
    socket.on("close", () => this.#gone());
    for (const frame of buffered) this.#frame(frame);
    socket.unref();
  }

  close(): void {
    if (this.channel.lost === undefined) {
      this.#closedByClient = true;
      this.channel.lose({ postmasterGone: false, message: `the connection to the postmaster on ${this.socketPath} was closed by this client` });
      // Referenced until the close completes, so that `await client.close()` itself is not cut short.
      this.#socket.ref();
      this.#socket.end();
      // A server that does not close its end promptly must not keep this process alive.
      const timer = setTimeout(() => this.#socket.destroy(), 1000);
      timer.unref();
    }
    if (this.role !== undefined) leaveRole(this.role);
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
    // A reply to no request: the server reports a connection-level problem, and usually drops us next.
    if (!this.channel.settle(reply.id, reply) && !reply.ok) this.#serverError = reply.error.message;
  }

  #gone(): void {
    if (!this.#closedByClient) {
      const why = this.#serverError === undefined ? "" : `: ${this.#serverError}`;
      this.channel.lose({ postmasterGone: true, message: `the postmaster on ${this.socketPath} closed the connection${why}` });
    }
    if (this.role !== undefined) leaveRole(this.role);
  }
}

let makeClient: (transport: SocketTransport, hello: HelloResult) => PostmasterClient;
let channelOf: (client: PostmasterClient) => RequestChannel;

/**
 * A connection to a running postmaster (SPEC §5). Made by `connect()`. Besides SPEC's members it has
 * `socketPath`, `postmasterId`, `postmasterPid`, `closed`, `statusReport()`, `restart()` and `reload()`
 * (docs/api.md).
 */
export class PostmasterClient {
  /** The socket this client is connected to, as an absolute path. */
  readonly socketPath: string;
  /** The postmaster's run id, as its `Postmaster#postmasterId` (the handles of its workers carry it). */
  readonly postmasterId: string;
  /** The postmaster's process id. */
  readonly postmasterPid: number;
  /**
   * Resolves when the connection has ended, for whatever reason: `close()`, or the postmaster shut down or
   * died (after `stop()`, it tells when the postmaster is gone).
   */
  readonly closed: Promise<void>;
  readonly #transport: SocketTransport;

  static {
    makeClient = (transport, hello) => new PostmasterClient(transport, hello);
    channelOf = (client) => client.#transport.channel;
  }

  private constructor(transport: SocketTransport, hello: HelloResult) {
    this.#transport = transport;
    this.socketPath = transport.socketPath;
    this.postmasterId = hello.postmaster;
    this.postmasterPid = hello.pid;
    this.closed = transport.closed;
  }

  /** Starts a dynamic worker through this connection (whatever `connect()` was called last). */
  loadDynamic(builder: BackgroundWorkerBuilder): Promise<DynamicBackgroundWorker> {
    return launchWith(builder, this.#transport.launcher, this.loadDynamic);
  }

  /** A handle from its string (e.g. printed by `bgworker launch`); waits are allowed only to its notify pid's process. */
  attach(handle: string): DynamicBackgroundWorker {
    // The notify pid is the postmaster's to know; it decides who may wait, so an attached handle shows 0.
    return this.#transport.launcher.attach(handle);
  }

  /** The worker rows of SPEC §7. */
  async status(): Promise<WorkerStatusRow[]> {
    return [...(await this.statusReport()).workers];
  }

  /** The worker rows and the postmaster row (SPEC §7), as `Postmaster#status()` and `bgworker status --json`. */
  async statusReport(): Promise<StatusReport> {
    const result = await this.#transport.channel.request({ op: "status" }, "reject");
    if (typeof result !== "object" || result === null || !Array.isArray((result as StatusReport).workers)) {
      throw new ProtocolError("reply: status is not a status report");
    }
    return result as StatusReport;
  }

  /** Terminates a worker by pid or by handle: SIGTERM if running, unregistered if not started yet. */
  async terminate(target: number | string): Promise<void> {
    if (typeof target === "number") {
      if (!Number.isInteger(target) || target <= 0) {
        throw makeError(TypeError, "ERR_BGWORKER_INVALID_VALUE", `terminate: pid ${target} must be a positive integer`, this.terminate);
      }
      await this.#transport.channel.request({ op: "terminate", target }, "reject");
      return;
    }
    await this.#transport.launcher.terminate(parseHandle(target));
  }

  /**
   * A new process now for a worker (by pid or handle) or for every registered worker of a type
   * (`{ type }`), whatever its restart time, counted in its restarts. Resolves with how many workers
   * matched; rejects (ERR_BGWORKER_NO_SUCH_WORKER) when none does.
   */
  async restart(target: number | string | { readonly type: string }): Promise<number> {
    let wire: { pid: number } | { handle: string } | { type: string };
    if (typeof target === "number") {
      if (!Number.isInteger(target) || target <= 0) {
        throw makeError(TypeError, "ERR_BGWORKER_INVALID_VALUE", `restart: pid ${target} must be a positive integer`, this.restart);
      }
      wire = { pid: target };
    } else if (typeof target === "string") {
      wire = { handle: formatHandle(parseHandle(target)) };
    } else if (typeof target === "object" && target !== null && typeof target.type === "string" && target.type.length > 0) {
      wire = { type: target.type };
    } else {
      throw makeError(TypeError, "ERR_BGWORKER_INVALID_VALUE", "restart: target must be a pid, a handle or { type: string }", this.restart);
    }
    const result = (await this.#transport.channel.request({ op: "restart", target: wire }, "reject")) as { matched?: unknown } | null;
    if (typeof result?.matched !== "number") throw new ProtocolError("reply: restart is not {matched}");
    return result.matched;
  }

  /** Asks the postmaster to shut down (default fast, as `pg_ctl stop`); resolves once it has accepted (see `closed` for its exit). */
  async stop(mode: ShutdownMode = "fast"): Promise<void> {
    await this.#transport.channel.request({ op: "stop", mode }, "reject");
  }

  /**
   * Reloads, as SIGHUP to the postmaster (`bgworker reload`): SIGHUP to every running worker, and a managed
   * server's configuration re-read. Resolves once done.
   */
  async reload(): Promise<void> {
    await this.#transport.channel.request({ op: "reload" }, "reject");
  }

  /** Ends the connection. Requests still pending reject; the process may exit afterwards. */
  async close(): Promise<void> {
    this.#transport.close();
    await this.closed;
  }
}

/**
 * `bgworker status --cluster`: the nodes and leases of the postmaster's cluster, by the database server's
 * clock (SPEC §10). Rejects with ERR_BGWORKER_POSTMASTER_STATE when the postmaster is not in a cluster. A
 * function of the CLI's rather than a `PostmasterClient` member: the public client stays as SPEC §5 has it.
 */
export async function clusterStatusOf(client: PostmasterClient): Promise<ClusterStatus> {
  return clusterStatusFromWire(await channelOf(client).request({ op: "clusterStatus" }, "reject"));
}

function connectError(socketPath: string, error: NodeJS.ErrnoException): Error {
  if (error.code === "ENOENT" || error.code === "ECONNREFUSED") return makeError(Error, "ERR_BGWORKER_NO_POSTMASTER", `no postmaster running on ${socketPath}`);
  if (error.code === "EACCES") return makeError(Error, "ERR_BGWORKER_NO_POSTMASTER", `cannot connect to the postmaster on ${socketPath}: permission denied`);
  return makeError(Error, "ERR_BGWORKER_NO_POSTMASTER", `cannot connect to the postmaster on ${socketPath}: ${error.message}`);
}

/**
 * Connects to the postmaster listening on `socketPath` (default: `$BGWORKER_SOCKET`, else the socket of the
 * nearest `.bgworker/` at or above the working directory). Afterwards
 * `builder.loadDynamic()` in this process uses this connection, unless the process is a postmaster or a
 * worker (they have their own).
 */
export async function connect(socketPath?: string): Promise<PostmasterClient> {
  assertNotInServer("connect", "control-socket", connect);
  const absolute = clientSocketPath(socketPath);
  const address = socketAddress(absolute);
  const decoder = new FrameDecoder(MAX_REPLY_BYTES);
  const socket = net.createConnection(address);

  const { hello, buffered } = await new Promise<{ hello: HelloResult; buffered: string[] }>((resolve, reject) => {
    const frames: string[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(makeError(Error, "ERR_BGWORKER_CONNECTION_LOST", `the postmaster on ${absolute} did not answer within ${HELLO_TIMEOUT_MS / 1000} s`));
    }, HELLO_TIMEOUT_MS);
    const finish = (error: Error | undefined, result?: HelloResult): void => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("error", onError);
      socket.off("close", onClose);
      if (error !== undefined || result === undefined) {
        socket.destroy();
        reject(error ?? makeError(Error, "ERR_BGWORKER_CONNECTION_LOST", `no hello from the postmaster on ${absolute}`));
      } else resolve({ hello: result, buffered: frames });
    };
    const onError = (error: NodeJS.ErrnoException): void => finish(connectError(absolute, error));
    const onClose = (): void => finish(makeError(Error, "ERR_BGWORKER_CONNECTION_LOST", `the postmaster on ${absolute} closed the connection before its hello`));
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

  const transport = new SocketTransport(absolute, socket, decoder, buffered);
  const kind = processRole()?.kind;
  // A postmaster or a worker keeps its implicit connection; any other process uses its latest client.
  if (kind === undefined || kind === "client") {
    transport.role = { kind: "client", launcher: transport.launcher };
    takeRole(transport.role);
  }
  return makeClient(transport, hello);
}
