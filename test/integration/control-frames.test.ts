/**
 * Refused connections on the control socket, over a real Unix socket: an oversized frame (or a bad first
 * frame) gets its error reply before the connection closes, every time, however the client's bytes arrive
 * and whatever it keeps sending after. Hundreds of connections, because a lost reply used to be rare: the
 * server closed while the client was still writing, and the client's failing write tore its socket down
 * before it read the reply. Nothing here waits on a timer: each connection is followed to its end.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { ControlHandler } from "../../src/control/handler.js";
import { MAX_FRAME_BYTES } from "../../src/control/protocol.js";
import { ControlServer } from "../../src/control/server.js";
import { Logger } from "../../src/log.js";
import type { StatusReport } from "../../src/status.js";

const LIMIT = `exceeds the limit of ${MAX_FRAME_BYTES} bytes`;

/** Only `status` and `clientGone` are reached by these connections. */
class Handler implements ControlHandler {
  readonly postmasterId = "pm-frames";
  readonly gone = new Set<number>();
  readonly #goneWaiters = new Map<number, () => void>();

  status(): StatusReport {
    return {
      postmaster: { pid: process.pid, phase: "running", database: "none", uptimeMs: 1, shmemBytes: 0, maxWorkerProcesses: 1, spares: { count: 1, ready: 1, target: 1, max: 8, pssBytes: 9_437_184 }, shutdown: null },
      workers: [],
    };
  }
  launch(): never {
    throw new Error("not reached");
  }
  state(): never {
    throw new Error("not reached");
  }
  waitForStartup(): never {
    throw new Error("not reached");
  }
  waitForShutdown(): never {
    throw new Error("not reached");
  }
  terminate(): void {
    throw new Error("not reached");
  }
  restart(): number {
    throw new Error("not reached");
  }
  stop(): void {
    throw new Error("not reached");
  }
  async reload(): Promise<void> {
    throw new Error("not reached");
  }
  clientGone(pid: number): void {
    this.gone.add(pid);
    this.#goneWaiters.get(pid)?.();
  }

  /** Resolves once the server has closed the last connection of `pid` (it calls clientGone on its "close"). */
  forgotten(pid: number): Promise<void> {
    if (this.gone.has(pid)) return Promise.resolve();
    return new Promise((resolve) => this.#goneWaiters.set(pid, resolve));
  }
}

type Reply = { id: unknown; ok: boolean; result?: unknown; error?: { name: string; message: string; code?: string } };

/**
 * A client that writes what it is given, in the pieces it is given, whatever the server does meanwhile (it
 * is half-open, so the server's end of stream does not stop its writes), then ends its half. It records
 * the replies it had read when the server's end of stream came, and every socket error (none is expected).
 */
class Client {
  readonly socket: net.Socket;
  readonly replies: Reply[] = [];
  readonly errors: string[] = [];
  repliesAtEnd: number | undefined;
  readonly ended: Promise<void>;
  readonly closed: Promise<void>;
  #buffer = "";
  #waiters: Array<() => void> = [];

  constructor(socketPath: string) {
    this.socket = net.createConnection({ path: socketPath, allowHalfOpen: true });
    this.socket.on("error", (error: NodeJS.ErrnoException) => this.errors.push(`${error.code ?? ""} ${error.message}`));
    this.socket.on("data", (chunk: Buffer) => {
      this.#buffer += chunk.toString("utf8");
      let newline: number;
      while ((newline = this.#buffer.indexOf("\n")) !== -1) {
        this.replies.push(JSON.parse(this.#buffer.slice(0, newline)) as Reply);
        this.#buffer = this.#buffer.slice(newline + 1);
      }
      for (const wake of this.#waiters.splice(0)) wake();
    });
    this.ended = new Promise((resolve) =>
      this.socket.once("end", () => {
        this.repliesAtEnd = this.replies.length;
        resolve();
      }),
    );
    this.closed = new Promise((resolve) => this.socket.once("close", () => resolve()));
    // A reply awaited on a connection that ends without it is a failure, not a hang.
    void this.ended.then(() => this.#waiters.splice(0).forEach((wake) => wake()));
  }

  async connected(): Promise<void> {
    if (this.socket.connecting) await new Promise((resolve) => this.socket.once("connect", resolve));
  }

  /** Writes each piece, waiting for it to be taken by the kernel when `paced` (so they arrive apart). */
  async write(pieces: readonly Buffer[], paced: boolean): Promise<void> {
    for (const piece of pieces) {
      if (this.socket.destroyed) return;
      if (paced) await new Promise<void>((resolve) => this.socket.write(piece, () => resolve()));
      else this.socket.write(piece);
    }
  }

  async reply(count: number): Promise<Reply | undefined> {
    while (this.replies.length < count && this.repliesAtEnd === undefined) await new Promise<void>((resolve) => this.#waiters.push(resolve));
    return this.replies[count - 1];
  }
}

/** `bytes` cut into `count` pieces of uneven sizes (deterministic), so frames straddle the server's reads. */
function split(bytes: Buffer, count: number): Buffer[] {
  if (count <= 1) return [bytes];
  const cuts = new Set<number>();
  for (let i = 1; i < count; i++) cuts.add(Math.floor((bytes.length * ((i * i * 7919) % 1009)) / 1009));
  const sorted = [0, ...[...cuts].filter((cut) => cut > 0 && cut < bytes.length).sort((a, b) => a - b), bytes.length];
  return sorted.slice(1).map((end, i) => bytes.subarray(sorted[i], end));
}

/** A frame of exactly `size` bytes, newline excluded: a status request padded with spaces (valid JSON). */
function statusFrame(size: number, id: number): Buffer {
  const json = JSON.stringify({ id, op: "status" });
  assert.ok(size >= json.length);
  return Buffer.from(json + " ".repeat(size - json.length) + "\n");
}

const hello = (pid: number): Buffer => Buffer.from(JSON.stringify({ v: 1, op: "hello", pid, id: "h" }) + "\n");

/**
 * What a client may send after its oversized frame: nothing, frames the server must not read, or bulk. Each
 * starts with a newline or nothing, so the oversized frame is exactly as long as it was made.
 */
const BEHIND: Readonly<Record<string, (i: number) => Buffer>> = {
  nothing: () => Buffer.alloc(0),
  frames: (i) => Buffer.from("\n" + `{"id":${i},"op":"status"}\n`.repeat(200) + '{"v":1,"op":"hello","pid":1}\n'),
  bulk: (i) => Buffer.alloc(300_000 + i, "\nx"),
};

function assertLimitError(reply: Reply | undefined, size: number, what: string): void {
  assert.ok(reply !== undefined, `${what}: no error reply before the connection closed`);
  assert.equal(reply.id, null, what);
  assert.equal(reply.ok, false, what);
  assert.equal(reply.error?.name, "ProtocolError", what);
  assert.equal(reply.error?.code, "ERR_BGWORKER_PROTOCOL", what);
  const match = /^frame of at least (\d+) bytes exceeds the limit of (\d+) bytes$/.exec(reply.error?.message ?? "");
  assert.ok(match !== null, `${what}: ${reply.error?.message}`);
  assert.equal(Number(match[2]), MAX_FRAME_BYTES, what);
  // The server stops counting once the frame is known too large: at least one byte over, at most its size.
  assert.ok(Number(match[1]) > MAX_FRAME_BYTES && Number(match[1]) <= size, `${what}: ${reply.error?.message}`);
}

let dir: string;
let socketPath: string;
let handler: Handler;
let server: ControlServer;
const logLines: string[] = [];

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "bgw-frames-"));
  socketPath = path.join(dir, "bgworker.sock");
  handler = new Handler();
  // No connection here may be dropped by the linger: each must close because the client closed.
  server = new ControlServer({ path: socketPath, handler, logger: new Logger({ sink: (line) => logLines.push(line) }), closeLingerMs: 600_000 });
  await server.listen();
});

after(async () => {
  await server.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Runs `cases` with a few connections at a time, so that they also interleave at the server. */
async function inBatches<T>(cases: readonly T[], run: (c: T, i: number) => Promise<void>, width = 8): Promise<void> {
  for (let start = 0; start < cases.length; start += width) {
    await Promise.all(cases.slice(start, start + width).map((c, k) => run(c, start + k)));
  }
}

let nextPid = 100_000;

describe("control socket: refused connections get their reply before the close", () => {
  it("answers every oversized frame with the limit, then closes, whatever follows it and however it is split", async () => {
    const sizes = [MAX_FRAME_BYTES + 1, MAX_FRAME_BYTES + 2, MAX_FRAME_BYTES + 777, MAX_FRAME_BYTES + 4_096, 2 * MAX_FRAME_BYTES, 2 * MAX_FRAME_BYTES + 1, 200_003, 1_000_000];
    const piecesOf = [1, 2, 9, 64, 400];
    const cases = sizes.flatMap((size) =>
      Object.keys(BEHIND).flatMap((behind) => piecesOf.flatMap((pieces) => [false, true].map((helloFirst) => ({ size, behind, pieces, helloFirst })))),
    );
    assert.equal(cases.length, 240);
    await inBatches(cases, async ({ size, behind, pieces, helloFirst }, i) => {
      const what = `frame of ${size} bytes, ${behind} behind it, in ${pieces} writes${helloFirst ? ", after hello" : ""}`;
      const pid = nextPid++;
      const client = new Client(socketPath);
      await client.connected();
      let expected = 1;
      if (helloFirst) {
        client.socket.write(hello(pid));
        assert.equal((await client.reply(1))?.ok, true, what);
        expected = 2;
      }
      // Every other case ends the frame with its newline; the rest never do.
      const frame = Buffer.alloc(size + (i % 2), "{");
      if (i % 2 === 1) frame[size] = 0x0a;
      await client.write(split(Buffer.concat([frame, BEHIND[behind]!(i)]), pieces), i % 4 < 2);
      client.socket.end();
      await client.ended;
      await client.closed;
      assertLimitError(client.replies[expected - 1], size, what);
      assert.equal(client.repliesAtEnd, expected, `${what}: replies before the end of stream`);
      assert.equal(client.replies.length, expected, `${what}: nothing after the oversized frame was answered`);
      assert.deepEqual(client.errors, [], `${what}: the client's socket failed`);
      if (helloFirst) await handler.forgotten(pid);
    });
    assert.equal(logLines.filter((line) => line.includes(LIMIT)).length, 240);
  });

  it("serves a frame of exactly the limit and refuses one byte more, with the reply and then the close", async () => {
    const cases = Array.from({ length: 40 }, (_, i) => ({ pieces: [1, 3, 50, 1000][i % 4]!, paced: i % 2 === 0, behind: Object.keys(BEHIND)[i % 3]! }));
    await inBatches(cases, async ({ pieces, paced, behind }, i) => {
      const what = `case ${i}: ${pieces} writes${paced ? ", paced" : ""}, ${behind} behind`;
      const pid = nextPid++;
      const client = new Client(socketPath);
      await client.connected();
      const atLimit = statusFrame(MAX_FRAME_BYTES, 1);
      assert.equal(atLimit.length, MAX_FRAME_BYTES + 1);
      const overLimit = statusFrame(MAX_FRAME_BYTES + 1, 2);
      await client.write(split(Buffer.concat([hello(pid), atLimit, overLimit, BEHIND[behind]!(i)]), pieces), paced);
      client.socket.end();
      await client.closed;
      assert.equal(client.replies[0]?.ok, true, what);
      assert.deepEqual(client.replies[1], { id: 1, ok: true, result: handler.status() }, what);
      assertLimitError(client.replies[2], MAX_FRAME_BYTES + 1, what);
      assert.equal(client.replies[2]?.error?.message, `frame of at least ${MAX_FRAME_BYTES + 1} bytes ${LIMIT}`, what);
      assert.equal(client.repliesAtEnd, 3, what);
      assert.deepEqual(client.errors, [], what);
      await handler.forgotten(pid);
    });
  });

  it("replies then closes the same way after a bad first frame, with more frames behind it", async () => {
    const firsts: ReadonlyArray<[Buffer, RegExp]> = [
      [Buffer.from("not json\n"), /^frame is not valid JSON/],
      [Buffer.from([0xff, 0xfe, 0x0a]), /^frame is not valid UTF-8$/],
      [Buffer.from('{"id":1,"op":"status"}\n'), /^the first frame must be a hello/],
      [Buffer.from('{"v":2,"op":"hello","pid":1}\n'), /protocol version 2 is not supported/],
      [Buffer.from('{"v":1,"op":"hello","pid":-5}\n'), /pid/],
    ];
    const cases = Array.from({ length: 60 }, (_, i) => ({ first: firsts[i % firsts.length]!, behind: Object.keys(BEHIND)[i % 3]!, pieces: [1, 7, 300][i % 3]! }));
    await inBatches(cases, async ({ first: [bytes, message], behind, pieces }, i) => {
      const what = `bad first frame ${JSON.stringify(bytes.toString("latin1"))}, ${behind} behind, ${pieces} writes`;
      const client = new Client(socketPath);
      await client.connected();
      // A valid hello right behind the bad frame must not be read either.
      await client.write(split(Buffer.concat([bytes, hello(nextPid++), BEHIND[behind]!(i)]), pieces), i % 2 === 0);
      client.socket.end();
      await client.closed;
      assert.equal(client.replies.length, 1, `${what}: ${JSON.stringify(client.replies)}`);
      assert.equal(client.repliesAtEnd, 1, what);
      assert.equal(client.replies[0]?.ok, false, what);
      assert.match(client.replies[0]?.error?.message ?? "", message, what);
      assert.deepEqual(client.errors, [], what);
    });
  });

  it("drops a refused client that never closes its end, after the linger time", async () => {
    const lingering = new ControlServer({ path: path.join(dir, "linger.sock"), handler, logger: new Logger({ sink: () => undefined }), closeLingerMs: 50 });
    await lingering.listen();
    try {
      const pid = nextPid++;
      const client = new Client(lingering.path);
      await client.connected();
      client.socket.write(Buffer.concat([hello(pid), Buffer.alloc(MAX_FRAME_BYTES + 10, "{")]));
      await client.ended;
      assertLimitError(client.replies[1], MAX_FRAME_BYTES + 10, "lingering client");
      // The client keeps its half open and says nothing more: the server closes the connection by itself
      // (its "close" is what tells the handler that the client is gone).
      await handler.forgotten(pid);
      assert.deepEqual(client.errors, []);
      client.socket.destroy();
    } finally {
      await lingering.close();
    }
  });
});
