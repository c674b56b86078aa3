/**
 * Fuzzing the control socket with a fixed seed: random bytes, frames of every op with one field broken
 * (wrong types, out-of-range values, hostile handles and pids), oversized and truncated frames, bad first
 * frames, and many connections dropped mid-frame. Every frame gets a clear error; nothing else changes.
 */
import net from "node:net";
import { connect } from "../../../src/control/client.js";
import { MAX_FRAME_BYTES } from "../../../src/control/protocol.js";
import type { WorkerStatusRow } from "../../../src/status.js";
import type { RunningPostmaster } from "../../helpers/postmaster.js";
import { startFaultPostmaster } from "../common.js";
import { Expectations, Rng, sleep, type FaultCase, type FaultScale, type Outcome } from "../harness.js";

interface Reply {
  id: unknown;
  ok: boolean;
  error?: { name?: unknown; message?: unknown };
}

/** A raw connection: writes bytes, reads reply lines, knows when the server closed it. */
class Raw {
  readonly socket: net.Socket;
  readonly replies: Reply[] = [];
  readonly closed: Promise<void>;
  private buffer = "";
  private wake: (() => void) | undefined;

  constructor(path: string) {
    this.socket = net.createConnection(path);
    this.socket.on("error", () => undefined);
    this.socket.on("data", (chunk: Buffer) => {
      this.buffer += chunk.toString("utf8");
      let newline: number;
      while ((newline = this.buffer.indexOf("\n")) >= 0) {
        this.replies.push(JSON.parse(this.buffer.slice(0, newline)) as Reply);
        this.buffer = this.buffer.slice(newline + 1);
      }
      this.wake?.();
    });
    this.closed = new Promise((resolve) => this.socket.once("close", () => resolve()));
    void this.closed.then(() => this.wake?.());
  }

  static async open(path: string): Promise<Raw> {
    const raw = new Raw(path);
    await new Promise<void>((resolve, reject) => {
      raw.socket.once("connect", resolve);
      raw.socket.once("error", reject);
    });
    return raw;
  }

  get isClosed(): boolean {
    return this.socket.destroyed || this.socket.readyState === "closed";
  }

  /**
   * Writes `bytes` and waits for the next reply (undefined if the connection closes or 10 s pass). Pieces
   * are written a turn of the event loop apart, so that they reach the server in separate reads; writing
   * stops once the server has ended the connection.
   */
  async exchange(bytes: Buffer | string | readonly Buffer[]): Promise<Reply | undefined> {
    const count = this.replies.length;
    if (typeof bytes === "string" || Buffer.isBuffer(bytes)) this.socket.write(bytes);
    else {
      for (const piece of bytes) {
        if (this.socket.writableEnded || this.socket.destroyed) break;
        this.socket.write(piece);
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
    const deadline = Date.now() + 10_000;
    while (this.replies.length === count && !this.isClosed && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, 100);
      });
    }
    return this.replies[count];
  }

  async hello(id = 0): Promise<Reply | undefined> {
    return this.exchange(JSON.stringify({ v: 1, op: "hello", pid: process.pid, id }) + "\n");
  }
}

/** How long a connection the postmaster must close is given: far beyond a slow machine's, then it counts as left open. */
const CLOSE_PATIENCE_MS = 30_000;

/** Whether `closed` settles within CLOSE_PATIENCE_MS (at once if it already has), leaving no timer behind. */
async function closedInTime(closed: Promise<unknown>): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), CLOSE_PATIENCE_MS)));
  try {
    return await Promise.race([closed.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Values of every JSON (and JS-through-JSON) kind, for fields that must be something else. */
const ANY: readonly unknown[] = [
  null, true, false, 0, -1, 1.5, 2 ** 53, -(2 ** 31), 1e308, "", " ", "x".repeat(200), "\u0000", "😀", "bgw1:", "__proto__",
  [], [1, 2], {}, { kind: "number" }, { __proto__: { polluted: true } }, "NaN", "Infinity", "-0", "1e3",
];

function hostileHandles(postmasterId: string): string[] {
  return [
    "", "bgw1", "bgw1:::", "bgw2:x:0:1", `bgw1:${postmasterId}:-1:1`, `bgw1:${postmasterId}:99999:1`, `bgw1:${postmasterId}:0:0`,
    `bgw1:${postmasterId}:0:999999`, `bgw1:${postmasterId}:1.5:1`, `bgw1:${postmasterId}:0x1:1`, `bgw1:${postmasterId}:${"9".repeat(40)}:1`,
    `bgw1:other-postmaster:0:1`, `bgw1:${postmasterId}::1`, `bgw1:${postmasterId}:1e0:1`, `bgw1:${postmasterId}: 1:1`, `bgw1:${postmasterId}:01:1`, `bgw1:${postmasterId}:0:1:extra`, "bgw1:\u0000:0:1", `bgw1:${"a".repeat(5000)}:0:1`,
  ];
}

const DEFINITION = {
  name: "fuzz", type: "fuzz", library: "/nonexistent/fuzz.ts", function: "main", startTime: 0, restartTimeMs: null,
  argument: { kind: "null" }, extra: "", spi: false, shmem: false, notifyPid: 0,
};
type Field = keyof typeof DEFINITION;

/** Values that break each definition field's rule (never a valid value for it). */
const BAD_FIELD: Readonly<Record<Field, readonly unknown[]>> = {
  name: ["", "n".repeat(96), 1, null, [], {}],
  type: ["", "t".repeat(96), 1, null, {}],
  library: [1, null, true, [], {}],
  function: ["", 1, null, [], "f".repeat(96)],
  startTime: [-1, 3, 1.5, "0", null, true],
  restartTimeMs: [-1, 86_400_001, 1.5, "100", true, [], {}],
  argument: [null, 1, "x", {}, { kind: "string", value: "x" }, { kind: "number", value: "1" }, { kind: "bigint", value: "1.5" }, { kind: "number" }, { kind: "null", value: 1 }, { kind: "bigint", value: "9".repeat(400) }],
  extra: ["not base64!", "QQ", "A".repeat(400), 1, null, []],
  spi: ["true", 1, null],
  shmem: ["false", 0, null],
  notifyPid: [-1, 1.5, 1, 2 ** 31, "0", null],
};

/** A request frame with exactly one thing wrong. */
function brokenRequest(rng: Rng, id: number, postmasterId: string, postmasterPid: number): Record<string, unknown> {
  const handles = hostileHandles(postmasterId);
  switch (rng.int(0, 7)) {
    case 0: {
      const field = rng.pick(Object.keys(BAD_FIELD) as Field[]);
      return { id, op: "launch", definition: { ...DEFINITION, [field]: rng.pick(BAD_FIELD[field]) } };
    }
    case 1: {
      const definition: Record<string, unknown> = { ...DEFINITION };
      if (rng.next() < 0.5) delete definition[rng.pick(Object.keys(DEFINITION))];
      // An own property even for "__proto__", so that JSON carries it as a field.
      else Object.defineProperty(definition, rng.pick(["x", "constructor", "__proto__", "prototype"]), { value: rng.pick(ANY), enumerable: true });
      return { id, op: "launch", definition };
    }
    case 2:
      return { id, op: rng.pick(["state", "waitForStartup", "waitForShutdown"]), handle: rng.next() < 0.5 ? rng.pick(ANY) : rng.pick(handles) };
    case 3:
      return { id, op: "terminate", target: rng.pick([0, -1, 1, 1.5, 2 ** 31, postmasterPid, process.pid, null, [], {}, ...handles.filter((h) => !/:0:1$/.test(h))]) };
    case 4:
      return { id, op: "stop", mode: rng.pick(["", "SMART", "gentle", "fast ", 0, null, [], {}, "immediate\u0000"]) };
    case 5:
      return { id, op: rng.pick([null, 1, "", "STATUS", "hello", "constructor", "__proto__", "toString", "x".repeat(300)]) };
    case 6:
      return { id: rng.pick([-1, 1.5, "", "i".repeat(65), null, [], {}, true]), op: "status" };
    default:
      return { id, op: "status", [rng.pick(["x", "mode", "handle", "definition"])]: rng.pick(ANY) };
  }
}

/** What must not change: each row's identity and state, and the postmaster. */
function fingerprint(rows: readonly WorkerStatusRow[]): string {
  return JSON.stringify(rows.map((r) => [r.slot, r.name, r.pid, r.state, r.restarts, r.lastExit]));
}

function clearError(reply: Reply | undefined): boolean {
  const message = reply?.error?.message;
  return (
    reply !== undefined && reply.ok === false && typeof reply.error?.name === "string" &&
    typeof message === "string" && message.length > 0 && message.length < 600 && !message.includes("\n") && !/\bat .+:\d+:\d+/.test(message)
  );
}

async function run(scale: FaultScale, log: (line: string) => void): Promise<Outcome> {
  const e = new Expectations();
  const rng = new Rng(scale.seed ^ 0xc0ffee);
  let pm: RunningPostmaster | undefined;
  try {
    pm = await startFaultPostmaster(
      [{ name: "steady", function: "steady" }, { name: "counter", function: "counter", shmem: true, hook: true }],
      ["--no-database"],
    );
    await pm.waitForEvents("started", 2);
    const client = await connect(pm.socket);
    const before = fingerprint(await client.status());
    const postmasterId = client.postmasterId;
    const counts: Record<string, number> = {};
    const bump = (kind: string): void => void (counts[kind] = (counts[kind] ?? 0) + 1);

    // 1. Broken requests and random bytes on a connection that said hello: an error each, connection usable.
    const raw = await Raw.open(pm.socket);
    e.expect((await raw.hello())?.ok === true, "hello refused");
    const unclear: string[] = [];
    for (let i = 0; i < scale.fuzzCases; i++) {
      let frame: Buffer;
      if (rng.next() < 0.25) {
        frame = Buffer.concat([rng.bytes(rng.int(1, 300)).filter((b) => b !== 0x0a && b !== 0x20 && b !== 0x09 && b !== 0x0d), Buffer.from("\n")]);
        if (frame.length === 1) frame = Buffer.from("{\n");
        bump("random bytes");
      } else {
        frame = Buffer.from(JSON.stringify(brokenRequest(rng, i + 1, postmasterId, pm.pid)) + "\n");
        bump("broken request");
      }
      const reply = await raw.exchange(frame);
      const stale = /"op":"(?:state|waitForStartup|waitForShutdown|terminate)"/.test(frame.toString()) && reply?.ok === true;
      if (!clearError(reply) && !stale) unclear.push(`${frame.toString("utf8").slice(0, 120).trim()} -> ${JSON.stringify(reply)?.slice(0, 200)}`);
      if (raw.isClosed) {
        e.expect(false, `the server closed a connection that said hello, after ${frame.toString("utf8").slice(0, 80)}`);
        break;
      }
    }
    for (const line of unclear.slice(0, 5)) e.expect(false, `no clear error: ${line}`);
    e.expect(unclear.length === 0, `${unclear.length} frames without a clear error`);
    e.expect((await raw.exchange('{"id":"after","op":"status"}\n'))?.ok === true, "the connection stopped serving after the fuzzed frames");
    raw.socket.destroy();

    // 2. Bad first frames: an error reply, then the connection is closed (docs/control-protocol.md).
    const firstFrames: Buffer[] = [
      Buffer.from([0xff, 0xfe, 0x80, 0x0a]), Buffer.from("not json\n"), Buffer.from("[]\n"), Buffer.from('{"op":"status","id":1}\n'),
      Buffer.from('{"v":2,"op":"hello","pid":1}\n'), Buffer.from('{"v":1,"op":"hello","pid":-5}\n'), Buffer.from('{"v":1,"op":"hello"}\n'),
    ];
    for (let i = 0; i < Math.max(7, scale.fuzzCases / 20); i++) {
      const first = i < firstFrames.length ? firstFrames[i]! : Buffer.concat([rng.bytes(rng.int(1, 64)).filter((b) => b !== 0x0a), Buffer.from("\n")]);
      // A blank line is no frame at all (ignored, as documented): not a bad first frame.
      if (first.toString("latin1").trim().length === 0) continue;
      bump("bad first frame");
      const bad = await Raw.open(pm.socket);
      const reply = await bad.exchange(first);
      const closed = await closedInTime(bad.closed);
      e.expect(clearError(reply), `bad first frame ${JSON.stringify(first.toString("latin1"))}: no clear error (${JSON.stringify(reply)})`);
      if (!closed) {
        const later = await bad.hello(9);
        e.expect(false, `bad first frame ${JSON.stringify(first.toString("latin1"))}: connection left open${later?.ok === true ? " and a later hello accepted" : ""}`);
      }
      bad.socket.destroy();
    }

    // 3. Oversized frames: an error reply naming the limit, then closed; nothing buffered beyond the limit,
    // nothing after it answered. Sizes from one byte over the limit up, some ending in a newline, some with
    // more bytes behind them (frames, or bulk the server must drain), some written in many pieces: every
    // one must get its reply before the close (a close while the client still wrote used to lose it).
    const atLimit = await Raw.open(pm.socket);
    await atLimit.hello();
    const padded = JSON.stringify({ id: "at-limit", op: "status" });
    const served = await atLimit.exchange(padded + " ".repeat(MAX_FRAME_BYTES - padded.length) + "\n");
    e.expect(served?.ok === true && served.id === "at-limit", `a frame of exactly ${MAX_FRAME_BYTES} bytes was not served: ${JSON.stringify(served)?.slice(0, 200)}`);
    atLimit.socket.destroy();
    const oversizedCases = Math.max(24, Math.round(scale.fuzzCases / 20));
    const lost: string[] = [];
    for (let i = 0; i < oversizedCases; i++) {
      bump("oversized frame");
      const size = [MAX_FRAME_BYTES + 1, MAX_FRAME_BYTES + 4_096, 2 * MAX_FRAME_BYTES + 1][i] ?? rng.int(MAX_FRAME_BYTES + 1, 4 * MAX_FRAME_BYTES);
      const helloFirst = i % 2 === 1;
      const behind = ["nothing", "frames", "bulk"][i % 3]!;
      const tail =
        behind === "frames" ? Buffer.from("\n" + '{"id":1,"op":"status"}\n'.repeat(50) + JSON.stringify({ v: 1, op: "hello", pid: process.pid }) + "\n")
        : behind === "bulk" ? Buffer.alloc(rng.int(1, 300_000), "\nx")
        : Buffer.alloc(0);
      const bytes = Buffer.concat([Buffer.alloc(size, 0x41), rng.next() < 0.5 ? Buffer.from("\n") : Buffer.alloc(0), tail]);
      const pieces: Buffer[] = [];
      for (let at = 0, n = rng.pick([1, 2, 5, 40]); at < bytes.length; at += Math.ceil(bytes.length / n)) pieces.push(bytes.subarray(at, at + Math.ceil(bytes.length / n)));
      const what = `oversized frame of ${size} bytes${helloFirst ? " after hello" : ""}, ${behind} behind, in ${pieces.length} writes`;
      const big = await Raw.open(pm.socket);
      if (helloFirst) await big.hello();
      const before = big.replies.length;
      const reply = await big.exchange(pieces);
      const closed = await closedInTime(big.closed);
      const named = typeof reply?.error?.message === "string" && reply.error.message.endsWith(`exceeds the limit of ${MAX_FRAME_BYTES} bytes`);
      if (!clearError(reply) || !named || reply?.id !== null || !closed || big.replies.length !== before + 1) {
        lost.push(`${what}: reply ${JSON.stringify(reply)?.slice(0, 200)}, ${big.replies.length - before} replies, closed ${closed}`);
      }
      big.socket.destroy();
    }
    for (const line of lost.slice(0, 5)) e.expect(false, line);
    e.expect(lost.length === 0, `${lost.length} of ${oversizedCases} oversized frames without their error reply before the close`);

    // 4. Many connections dropped mid-frame (before and after hello), all at once.
    const drops = Math.max(20, scale.fuzzCases / 10);
    await Promise.all(
      Array.from({ length: drops }, async (_, i) => {
        bump("dropped mid-frame");
        const partial = await Raw.open(pm!.socket);
        if (i % 2 === 1) await partial.hello();
        const frame = JSON.stringify({ id: i, op: "launch", definition: DEFINITION });
        partial.socket.write(frame.slice(0, rng.int(1, frame.length - 1)));
        if (i % 3 === 0) partial.socket.end();
        else partial.socket.destroy();
      }),
    );

    await sleep(200);
    const after = await client.status();
    e.expect(fingerprint(after) === before, `status changed:\n${before}\n${fingerprint(after)}`);
    e.expect(after.every((r) => r.name !== "fuzz"), "a fuzzed launch registered a worker");
    const fresh = await connect(pm.socket);
    e.expect((await fresh.status()).length === after.length, "a new client is not served");
    await fresh.close();
    await client.close();
    e.expect(pm.child.exitCode === null && pm.child.signalCode === null, "the postmaster died");
    e.figure("frames", Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(", "));
    e.figure("afterwards", "status unchanged, postmaster serving");
    log(`fuzz-control: ${Object.values(counts).reduce((a, b) => a + b, 0)} cases`);
  } catch (error) {
    e.expect(false, `aborted: ${error instanceof Error ? error.message.split("\n")[0] : String(error)}`);
  } finally {
    await pm?.close().catch((error: Error) => e.expect(false, error.message));
  }
  return e.outcome();
}

export const fuzzControl: FaultCase = {
  id: "fuzz-control",
  group: "fuzz",
  title: "control socket: random bytes, broken fields, hostile handles, bad first frames, oversized and dropped frames",
  bounded: true,
  run,
};
