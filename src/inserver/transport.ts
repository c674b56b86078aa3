/**
 * The child's side of the socket to its backend (fd 3): frames out (written synchronously, so nothing is
 * lost when the worker calls `process.exit()` right after), replies back in order, and the backend's own
 * frames (signals, latch) to a listener. The backend serves one request at a time, in order, so a FIFO of
 * pending requests pairs each reply with its request.
 */
import { writeSync } from "node:fs";
import { Socket, type OnReadOpts, type SocketConstructorOpts } from "node:net";
import { FrameStream, FrameWriter, type FrameReader } from "./wire.js";

const FD = 3;
/** The size of a read: libuv's own for a stream. */
const READ_BUFFER = 64 * 1024;
/** Reply frame types; every other frame from the backend comes on its own. */
const REPLIES = new Set(["K", "Z", "T", "E", "h", "s"]);

/** A PostgreSQL error sent by the backend, with the fields node-postgres's `DatabaseError` has. */
export class DatabaseError extends Error {
  override readonly name = "DatabaseError";
  readonly code: string;
  readonly severity: string | undefined;
  readonly detail: string | undefined;
  readonly hint: string | undefined;
  readonly position: string | undefined;
  readonly where: string | undefined;
  readonly schema: string | undefined;
  readonly table: string | undefined;
  readonly column: string | undefined;
  readonly constraint: string | undefined;

  constructor(reader: FrameReader) {
    const code = reader.str() ?? "XX000";
    const severity = reader.str() ?? undefined;
    super(reader.str() ?? "unknown error");
    this.code = code;
    this.severity = severity;
    this.detail = reader.str() ?? undefined;
    this.hint = reader.str() ?? undefined;
    const position = reader.u32();
    this.position = position > 0 ? String(position) : undefined;
    this.where = reader.str() ?? undefined;
    this.schema = reader.str() ?? undefined;
    this.table = reader.str() ?? undefined;
    this.column = reader.str() ?? undefined;
    this.constraint = reader.str() ?? undefined;
  }
}

/** The backend is gone (it exited, or the server is stopping): no request is answered any more. */
export class BackendGoneError extends Error {
  override readonly name = "BackendGoneError";
}

interface Pending {
  readonly resolve: (reply: FrameReader) => void;
  readonly reject: (error: Error) => void;
}

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

export class BackendTransport {
  readonly #socket: Socket;
  readonly #stream = new FrameStream();
  readonly #pending: Pending[] = [];
  #gone = false;
  readonly #onFrame: (frame: FrameReader) => void;
  readonly #onGone: () => void;

  constructor(onFrame: (frame: FrameReader) => void, onGone: () => void) {
    this.#onFrame = onFrame;
    this.#onGone = onGone;
    // Reads land in one buffer of this transport's and come straight to #read, past the stream machinery
    // of 'data' events: a reply is one read, and this is the path of every statement.
    // (Node's Socket takes `onread` from its constructor's options, as net.connect() passes them on; its
    // types list it for connect() only.)
    const options: SocketConstructorOpts & { onread: OnReadOpts } = {
      fd: FD,
      readable: true,
      writable: false,
      onread: { buffer: Buffer.allocUnsafe(READ_BUFFER), callback: (bytes, into) => this.#read(bytes, into) },
    };
    this.#socket = new Socket(options);
    this.#socket.on("error", () => this.#lose());
    this.#socket.on("close", () => this.#lose());
    this.#socket.on("end", () => this.#lose());
  }

  /** True: reading goes on. */
  #read(bytes: number, into: Uint8Array): boolean {
    // The next read reuses the buffer, and a reply may be read after this returns: its bytes are copied.
    const chunk = Buffer.allocUnsafe(bytes);
    chunk.set(into.subarray(0, bytes));
    for (const frame of this.#stream.push(chunk)) this.#dispatch(frame);
    return true;
  }

  get gone(): boolean {
    return this.#gone;
  }

  #dispatch(frame: FrameReader): void {
    if (!REPLIES.has(frame.type)) {
      this.#onFrame(frame);
      return;
    }
    const pending = this.#pending.shift();
    if (pending === undefined) return;
    if (frame.type === "E") pending.reject(new DatabaseError(frame));
    else pending.resolve(frame);
  }

  #lose(): void {
    if (this.#gone) return;
    this.#gone = true;
    const error = new BackendGoneError("the background worker's backend is gone");
    for (const pending of this.#pending.splice(0)) pending.reject(error);
    this.#onGone();
  }

  /** Writes a frame now; false when the backend is gone. */
  send(frame: FrameWriter): boolean {
    if (this.#gone) return false;
    const bytes = frame.toBuffer();
    let written = 0;
    while (written < bytes.length) {
      try {
        written += writeSync(FD, bytes, written, bytes.length - written);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === "EAGAIN") {
          sleepMs(1);
          continue;
        }
        this.#lose();
        return false;
      }
    }
    return true;
  }

  /** Sends a request and resolves with its reply; an error reply rejects with `DatabaseError`. */
  request(frame: FrameWriter): Promise<FrameReader> {
    if (this.#gone) return Promise.reject(new BackendGoneError("the background worker's backend is gone"));
    return new Promise((resolve, reject) => {
      this.#pending.push({ resolve, reject });
      // On failure #lose() has rejected it with the others.
      this.send(frame);
    });
  }
}
