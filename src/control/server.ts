/**
 * The postmaster's end of the control socket: accepts connections, frames and validates requests
 * (protocol.ts), hands them to the `ControlHandler`, and writes the replies. One misbehaving client can
 * only lose its own connection; the server and the other clients are never disturbed.
 */
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { errorToWire, makeError } from "../errors.js";
import type { Logger } from "../log.js";
import { dispatchRequest } from "./dispatch.js";
import type { ControlHandler } from "./handler.js";
import {
  encodeFrame,
  FrameDecoder,
  MAX_FRAME_BYTES,
  MAX_IN_FLIGHT,
  parseHello,
  parseRequest,
  PROTOCOL_VERSION,
  ProtocolError,
  type HelloResult,
  type Reply,
  type RequestId,
} from "./protocol.js";
import { socketAddress } from "./socket-path.js";

/** A client that stops reading its replies is dropped once this much is queued for it. */
const MAX_QUEUED_REPLY_BYTES = 8 * 1024 * 1024;
/** How long the stale-socket probe waits for a connection before calling the file's owner alive. */
const PROBE_TIMEOUT_MS = 2000;
/**
 * How long a connection refused with an error reply waits for the client to close its end before it is
 * dropped anyway: a client that reads the reply closes at once, one that never closes must not be kept.
 */
const CLOSE_LINGER_MS = 2000;

export interface ControlServerOptions {
  /** Where to create the socket; relative paths are taken from the working directory. */
  readonly path: string;
  readonly handler: ControlHandler;
  readonly logger: Logger;
  /** Overrides CLOSE_LINGER_MS, so that a test of a client that never closes does not wait for it. */
  readonly closeLingerMs?: number;
}

interface Connection {
  readonly socket: net.Socket;
  /** The client's pid, once it has said hello. */
  pid: number | undefined;
  inFlight: number;
  /** Set once a fatal error has been replied: nothing more is written, and what arrives is read and discarded. */
  ending: boolean;
}

/**
 * Throws "another postmaster is running on SOCKET" when a postmaster answers there: checked by `start` before
 * any extension is loaded, so a second start in a directory runs no `_PG_init` and starts no worker.
 */
export async function assertSocketFree(socketPath: string): Promise<void> {
  const absolute = path.resolve(socketPath);
  if ((await probe(absolute, socketAddress(absolute))) === "live") {
    throw makeError(Error, "ERR_BGWORKER_SOCKET_IN_USE", `another postmaster is running on ${absolute}`);
  }
}

/** Whether something answers on an existing socket file: a live server, or a stale file left by a dead one. */
async function probe(socketPath: string, address: string): Promise<"live" | "dead" | "absent"> {
  let stat: fs.Stats;
  try {
    stat = await fs.promises.lstat(socketPath);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return "absent";
    throw error;
  }
  if (!stat.isSocket()) throw makeError(Error, "ERR_BGWORKER_CONTROL_SOCKET", `${socketPath} exists and is not a socket; remove it or choose another socket path`);
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(address);
    const timer = setTimeout(() => {
      socket.destroy();
      resolve("live");
    }, PROBE_TIMEOUT_MS);
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.destroy();
      resolve("live");
    });
    socket.once("error", (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (error.code === "ECONNREFUSED") resolve("dead");
      else if (error.code === "ENOENT") resolve("absent");
      else reject(makeError(Error, "ERR_BGWORKER_CONTROL_SOCKET", `cannot check the existing socket ${socketPath}: ${error.message}`));
    });
  });
}

export class ControlServer {
  readonly path: string;
  readonly #handler: ControlHandler;
  readonly #logger: Logger;
  readonly #closeLingerMs: number;
  readonly #connections = new Set<Connection>();
  /** Open connections per client pid: a process's notifications are cancelled when its last one closes. */
  readonly #pids = new Map<number, number>();
  #server: net.Server | undefined;
  #inode: number | undefined;
  #closing = false;

  constructor(options: ControlServerOptions) {
    this.path = path.resolve(options.path);
    this.#handler = options.handler;
    this.#logger = options.logger;
    this.#closeLingerMs = options.closeLingerMs ?? CLOSE_LINGER_MS;
  }

  /**
   * Creates the socket (owner-only) and starts accepting. A stale socket file whose server is dead is
   * replaced; a live one is an error: "another postmaster is running on SOCKET".
   */
  async listen(): Promise<void> {
    if (this.#server !== undefined) throw new Error(`control server on ${this.path} is already listening`);
    const address = socketAddress(this.path);
    const directory = path.dirname(this.path);
    // Only a directory we create is ours to restrict; an existing one (e.g. /tmp) keeps its mode.
    const created = fs.mkdirSync(directory, { recursive: true, mode: 0o700 });
    if (created !== undefined) fs.chmodSync(directory, 0o700);

    const found = await probe(this.path, address);
    if (found === "live") throw makeError(Error, "ERR_BGWORKER_SOCKET_IN_USE", `another postmaster is running on ${this.path}`);
    if (found === "dead") {
      fs.rmSync(this.path, { force: true });
      // Said as for the stale segment and server, so that a start after a crash reports all it cleaned.
      this.#logger.log("LOG", `removed stale control socket ${this.path} left by a postmaster that is gone`);
    }

    const server = net.createServer((socket) => this.#accept(socket));
    await new Promise<void>((resolve, reject) => {
      const onError = (error: NodeJS.ErrnoException): void => {
        if (error.code === "EADDRINUSE") reject(makeError(Error, "ERR_BGWORKER_SOCKET_IN_USE", `another postmaster is running on ${this.path}`));
        else reject(makeError(Error, "ERR_BGWORKER_CONTROL_SOCKET", `cannot create the control socket ${this.path}: ${error.message}`));
      };
      server.once("error", onError);
      // The socket file is created by bind() inside listen(), synchronously for a path: a umask around
      // the call makes it owner-only from its first instant; the chmod below makes sure of it.
      let previousMask: number | undefined;
      try {
        previousMask = process.umask(0o177);
      } catch {
        // Worker threads cannot change the umask; the chmod after listening still applies.
      }
      try {
        server.listen(address, () => {
          server.off("error", onError);
          resolve();
        });
      } finally {
        if (previousMask !== undefined) process.umask(previousMask);
      }
    });
    try {
      fs.chmodSync(this.path, 0o600);
      this.#inode = fs.statSync(this.path).ino;
    } catch (error) {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      throw makeError(Error, "ERR_BGWORKER_CONTROL_SOCKET", `cannot restrict the control socket ${this.path}: ${(error as Error).message}`);
    }
    server.on("error", (error) => this.#logger.log("WARNING", `control socket ${this.path}: ${error.message}`));
    this.#server = server;
  }

  /** Stops accepting, drops every connection (their pending waits are not answered) and removes the socket. */
  async close(): Promise<void> {
    const server = this.#server;
    if (server === undefined || this.#closing) return;
    this.#closing = true;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const connection of this.#connections) connection.socket.destroy();
    await closed;
    // Remove the file only if it is still the one we created (a successor may have replaced it).
    try {
      if (fs.statSync(this.path).ino === this.#inode) fs.rmSync(this.path, { force: true });
    } catch {
      // Already gone.
    }
    this.#server = undefined;
  }

  #accept(socket: net.Socket): void {
    if (this.#closing) {
      socket.destroy();
      return;
    }
    const connection: Connection = { socket, pid: undefined, inFlight: 0, ending: false };
    this.#connections.add(connection);
    const decoder = new FrameDecoder(MAX_FRAME_BYTES);
    socket.on("data", (chunk: Buffer) => {
      // After a fatal error the rest of the stream is read only so that the connection can close cleanly (#fatal).
      if (connection.ending) return;
      for (const event of decoder.push(chunk)) {
        if (socket.destroyed || connection.ending) return;
        if ("frame" in event) this.#frame(connection, event.frame);
        else if ("oversized" in event) {
          this.#fatal(connection, `frame of at least ${event.oversized} bytes exceeds the limit of ${MAX_FRAME_BYTES} bytes`);
        } else if (connection.pid === undefined) {
          // The first frame must be a hello (docs/control-protocol.md); anything else ends the connection.
          this.#fatal(connection, "frame is not valid UTF-8");
        } else this.#reply(connection, { id: null, ok: false, error: errorToWire(new ProtocolError("frame is not valid UTF-8")) });
      }
    });
    // A client that vanishes mid-write only costs its own connection.
    socket.on("error", () => undefined);
    socket.on("close", () => this.#closed(connection));
  }

  #closed(connection: Connection): void {
    this.#connections.delete(connection);
    const pid = connection.pid;
    if (pid === undefined) return;
    const remaining = (this.#pids.get(pid) ?? 1) - 1;
    if (remaining > 0) {
      this.#pids.set(pid, remaining);
      return;
    }
    this.#pids.delete(pid);
    // While the postmaster shuts the server down, its clients' notifications no longer matter.
    if (this.#closing) return;
    try {
      this.#handler.clientGone(pid);
    } catch (error) {
      this.#logger.log("WARNING", `control socket: forgetting client ${pid} failed: ${(error as Error).message}`);
    }
  }

  /**
   * Replies with a protocol error and closes the connection: used when the stream cannot be trusted any more
   * (an oversized frame, a bad first frame). Every close that follows an error reply goes through here.
   *
   * The socket is not destroyed here, even once the reply is flushed: the client may still be writing (the
   * rest of an oversized frame, frames pipelined behind a bad hello). Closing with its bytes unread, or while
   * it writes, loses the reply: the client's next write fails (EPIPE on a Unix socket, an RST over TCP) and
   * tears its socket down before it has read what is already there. Instead the server ends its half after
   * the reply, so the client reads the reply and then end of stream, and keeps reading, discarding, until
   * the client ends its half; the socket then closes with nothing unread (the server's sockets are not
   * half-open, so Node destroys it once both halves are done). A client that never closes is dropped after
   * the linger time.
   */
  #fatal(connection: Connection, message: string, id: RequestId | null = null): void {
    this.#logger.log("WARNING", `control socket: closing connection of client ${connection.pid ?? "(before hello)"}: ${message}`);
    this.#reply(connection, { id, ok: false, error: errorToWire(new ProtocolError(message)) });
    connection.ending = true;
    const socket = connection.socket;
    // The reply may already have dropped a client that does not read its replies.
    if (socket.destroyed) return;
    socket.end();
    const linger = setTimeout(() => socket.destroy(), this.#closeLingerMs);
    // The postmaster's exit never waits for a refused client; close() destroys every connection anyway.
    linger.unref();
    socket.once("close", () => clearTimeout(linger));
  }

  #reply(connection: Connection, reply: Reply): void {
    const socket = connection.socket;
    if (socket.destroyed || !socket.writable || connection.ending) return;
    socket.write(encodeFrame(reply));
    if (socket.writableLength > MAX_QUEUED_REPLY_BYTES) {
      this.#logger.log("WARNING", `control socket: dropping client ${connection.pid ?? "(before hello)"}: it does not read its replies`);
      socket.destroy();
    }
  }

  #frame(connection: Connection, frame: string): void {
    if (connection.pid === undefined) {
      const hello = parseHello(frame);
      if (!hello.ok) {
        this.#fatal(connection, hello.error.message, hello.id);
        return;
      }
      connection.pid = hello.value.pid;
      this.#pids.set(hello.value.pid, (this.#pids.get(hello.value.pid) ?? 0) + 1);
      const result: HelloResult = { v: PROTOCOL_VERSION, postmaster: this.#handler.postmasterId, pid: process.pid };
      this.#reply(connection, { id: hello.value.id ?? null, ok: true, result });
      return;
    }
    const parsed = parseRequest(frame);
    if (!parsed.ok) {
      this.#reply(connection, { id: parsed.id, ok: false, error: errorToWire(parsed.error) });
      return;
    }
    const request = parsed.value;
    if (connection.inFlight >= MAX_IN_FLIGHT) {
      const error = new ProtocolError(`too many requests in flight on this connection (limit ${MAX_IN_FLIGHT})`);
      this.#reply(connection, { id: request.id, ok: false, error: errorToWire(error) });
      return;
    }
    connection.inFlight += 1;
    dispatchRequest(this.#handler, request, connection.pid).then(
      (result) => this.#reply(connection, { id: request.id, ok: true, result }),
      (error: unknown) => this.#reply(connection, { id: request.id, ok: false, error: errorToWire(error) }),
    ).finally(() => {
      connection.inFlight -= 1;
    });
  }
}
