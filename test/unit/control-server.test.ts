/**
 * The control server and client over a real Unix socket in a temp dir. The postmaster is replaced by a
 * small in-test `ControlHandler` (its decisions only); the lead's end-to-end tests use a real postmaster.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, beforeEach, afterEach, describe, it } from "node:test";
import { BackgroundWorkerBuilder } from "../../src/builder.js";
import { leaveRole, processRole, takeRole, type ProcessRole } from "../../src/context.js";
import { Launcher } from "../../src/launcher.js";
import { connect, type PostmasterClient } from "../../src/control/client.js";
import type { ControlHandler } from "../../src/control/handler.js";
import { MAX_FRAME_BYTES } from "../../src/control/protocol.js";
import { ControlServer } from "../../src/control/server.js";
import { defaultSocketPath, socketAddress } from "../../src/control/socket-path.js";
import type { WorkerDefinition } from "../../src/definition.js";
import { BackgroundWorkerStatus, BackgroundWorkerStatusError, NoFreeWorkerSlotError } from "../../src/errors.js";
import { formatHandle, type HandleRef, type HandleState } from "../../src/handle-format.js";
import { Logger } from "../../src/log.js";
import type { ShutdownMode, StatusReport } from "../../src/status.js";

const TSX = import.meta.resolve("tsx");

interface FakeSlot {
  readonly definition: WorkerDefinition;
  generation: number;
  pid: number | undefined;
  status: BackgroundWorkerStatus;
  readonly startupWaiters: Array<(state: HandleState) => void>;
  readonly shutdownWaiters: Array<(state: HandleState) => void>;
}

/** The postmaster's decisions, reduced to what the socket layer needs to be exercised. */
class FakePostmaster implements ControlHandler {
  readonly postmasterId = "pm-test";
  readonly slots: Array<FakeSlot | undefined> = [];
  readonly gone: number[] = [];
  readonly stops: ShutdownMode[] = [];
  reloads = 0;
  readonly terminated: Array<number | HandleRef> = [];
  constructor(readonly maxWorkers = 2) {}

  status(): StatusReport {
    return {
      postmaster: { pid: process.pid, phase: "running", database: "none", uptimeMs: 1, shmemBytes: 0, maxWorkerProcesses: this.maxWorkers, spares: { count: 0, ready: 0, target: 0, max: 0, pssBytes: 0 }, shutdown: null },
      workers: this.slots.flatMap((slot, index) =>
        slot === undefined
          ? []
          : [{
              slot: index, name: slot.definition.name, type: slot.definition.type, pid: slot.pid ?? null,
              state: slot.status === BackgroundWorkerStatus.Started ? ("running" as const) : ("waiting" as const),
              startTime: "PostmasterStart" as const, restartTimeMs: null, restarts: 0, lastExit: null,
              notifyPid: slot.definition.notifyPid, kind: "dynamic" as const, spi: false, shmem: false, backoffMs: null,
              handle: formatHandle(this.ref(index)),
            }],
      ),
    };
  }

  ref(index: number): HandleRef {
    return { postmaster: this.postmasterId, slot: index, generation: this.slots[index]?.generation ?? 0 };
  }

  launch(definition: WorkerDefinition): HandleRef {
    if (definition.library === "shutting-down") throw new Error("the postmaster is shutting down: no new background workers");
    const free = [...Array(this.maxWorkers).keys()].find((index) => this.slots[index] === undefined);
    if (free === undefined) throw new NoFreeWorkerSlotError(`no free background worker slot (max_worker_processes = ${this.maxWorkers})`);
    this.slots[free] = { definition, generation: 1, pid: undefined, status: BackgroundWorkerStatus.NotYetStarted, startupWaiters: [], shutdownWaiters: [] };
    return this.ref(free);
  }

  #slot(ref: HandleRef): FakeSlot | undefined {
    const slot = this.slots[ref.slot];
    return slot !== undefined && slot.generation === ref.generation && ref.postmaster === this.postmasterId ? slot : undefined;
  }

  state(ref: HandleRef): HandleState {
    const slot = this.#slot(ref);
    if (slot === undefined) return { status: BackgroundWorkerStatus.Stopped };
    return slot.pid === undefined ? { status: slot.status } : { status: slot.status, pid: slot.pid };
  }

  waitForStartup(ref: HandleRef, callerPid: number): Promise<HandleState> {
    const slot = this.#slot(ref);
    if (slot === undefined) return Promise.resolve({ status: BackgroundWorkerStatus.Stopped });
    if (slot.definition.notifyPid === 0 || slot.definition.notifyPid !== callerPid) return Promise.resolve({ status: BackgroundWorkerStatus.Untracked });
    if (slot.status !== BackgroundWorkerStatus.NotYetStarted) return Promise.resolve(this.state(ref));
    return new Promise((resolve) => slot.startupWaiters.push(resolve));
  }

  waitForShutdown(ref: HandleRef, callerPid: number): Promise<HandleState> {
    const slot = this.#slot(ref);
    if (slot === undefined) return Promise.resolve({ status: BackgroundWorkerStatus.Stopped });
    if (slot.definition.notifyPid !== callerPid) return Promise.resolve({ status: BackgroundWorkerStatus.Untracked });
    return new Promise((resolve) => slot.shutdownWaiters.push(resolve));
  }

  restart(): number {
    return 1;
  }
  terminate(target: number | HandleRef): void {
    if (typeof target === "number" && !this.slots.some((slot) => slot?.pid === target)) throw new Error(`no background worker with pid ${target}`);
    this.terminated.push(target);
  }

  stop(mode: ShutdownMode): void {
    this.stops.push(mode);
  }

  async reload(): Promise<void> {
    this.reloads += 1;
  }

  clientGone(pid: number): void {
    this.gone.push(pid);
  }

  /** Test control: the worker in `index` has entered its function. */
  start(index: number, pid: number): void {
    const slot = this.slots[index];
    assert.ok(slot !== undefined);
    slot.pid = pid;
    slot.status = BackgroundWorkerStatus.Started;
    for (const wake of slot.startupWaiters.splice(0)) wake({ status: slot.status, pid });
  }

  exit(index: number): void {
    const slot = this.slots[index];
    assert.ok(slot !== undefined);
    this.slots[index] = undefined;
    for (const wake of [...slot.startupWaiters.splice(0), ...slot.shutdownWaiters.splice(0)]) wake({ status: BackgroundWorkerStatus.Stopped });
  }
}

/** A raw connection speaking the protocol by hand: frames in, parsed replies out. */
class RawClient {
  readonly replies: Array<Record<string, unknown>> = [];
  readonly socket: net.Socket;
  readonly ended: Promise<void>;
  #buffer = "";
  #waiters: Array<() => void> = [];

  constructor(socketPath: string) {
    this.socket = net.createConnection(socketPath);
    this.socket.on("error", () => undefined);
    this.ended = new Promise((resolve) => this.socket.on("close", () => resolve()));
    this.socket.on("data", (chunk) => {
      this.#buffer += chunk.toString("utf8");
      let newline: number;
      while ((newline = this.#buffer.indexOf("\n")) !== -1) {
        this.replies.push(JSON.parse(this.#buffer.slice(0, newline)) as Record<string, unknown>);
        this.#buffer = this.#buffer.slice(newline + 1);
      }
      for (const wake of this.#waiters.splice(0)) wake();
    });
  }

  send(text: string): void {
    this.socket.write(text);
  }

  async reply(count = this.replies.length + 1): Promise<Record<string, unknown>> {
    while (this.replies.length < count) await new Promise<void>((resolve) => this.#waiters.push(resolve));
    const reply = this.replies[count - 1];
    assert.ok(reply !== undefined);
    return reply;
  }

  close(): void {
    this.socket.destroy();
  }
}

function waitFor(predicate: () => boolean, what: string, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const check = (): void => {
      if (predicate()) resolve();
      else if (Date.now() > deadline) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(check, 5);
    };
    check();
  });
}

const worker = (name = "w"): BackgroundWorkerBuilder => new BackgroundWorkerBuilder(name).setLibrary("/lib/worker.ts").setFunction("main");

let dir: string;
let socketPath: string;
let handler: FakePostmaster;
let server: ControlServer;
let logLines: string[];
const clients: PostmasterClient[] = [];

async function client(): Promise<PostmasterClient> {
  const c = await connect(socketPath);
  clients.push(c);
  return c;
}

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "bgw-control-"));
});

after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

beforeEach(async () => {
  socketPath = path.join(fs.mkdtempSync(path.join(dir, "t-")), "run", "bgworker.sock");
  handler = new FakePostmaster();
  logLines = [];
  server = new ControlServer({ path: socketPath, handler, logger: new Logger({ sink: (line) => logLines.push(line) }) });
  await server.listen();
});

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  await server.close();
  const role = processRole();
  if (role !== undefined) leaveRole(role);
});

describe("ControlServer: the socket file", () => {
  it("is owner-only, in an owner-only directory that it created", () => {
    assert.equal(fs.statSync(socketPath).mode & 0o777, 0o600);
    assert.equal(fs.statSync(path.dirname(socketPath)).mode & 0o777, 0o700);
    assert.ok(fs.statSync(socketPath).isSocket());
  });

  it("is removed on close", async () => {
    await server.close();
    assert.equal(fs.existsSync(socketPath), false);
  });

  it("refuses to start next to a live server", async () => {
    const second = new ControlServer({ path: socketPath, handler, logger: new Logger({ sink: () => undefined }) });
    await assert.rejects(second.listen(), { message: `another postmaster is running on ${socketPath}` });
    assert.ok(fs.existsSync(socketPath), "the live server's socket is left alone");
  });

  it("replaces a stale socket whose server is dead", async () => {
    await server.close();
    // A server killed with SIGKILL leaves its socket file behind.
    const child = spawn(process.execPath, ["-e", `require("net").createServer().listen(${JSON.stringify(socketPath)}, () => console.log("up"))`], { stdio: ["ignore", "pipe", "inherit"] });
    await new Promise<void>((resolve) => child.stdout.once("data", () => resolve()));
    child.kill("SIGKILL");
    await new Promise((resolve) => child.once("exit", resolve));
    assert.ok(fs.statSync(socketPath).isSocket(), "stale socket file is there");
    const lines: string[] = [];
    server = new ControlServer({ path: socketPath, handler, logger: new Logger({ sink: (line) => lines.push(line) }) });
    await server.listen();
    const c = await client();
    assert.equal(c.postmasterId, "pm-test");
    // Said, as the stale segment and server are, so that a start after a crash reports everything it cleaned.
    assert.ok(lines.some((line) => line.includes(`LOG:  removed stale control socket ${socketPath} left by a postmaster that is gone`)), lines.join("\n"));
  });

  it("refuses to replace a file that is not a socket", async () => {
    await server.close();
    fs.writeFileSync(socketPath, "precious");
    const other = new ControlServer({ path: socketPath, handler, logger: new Logger({ sink: () => undefined }) });
    await assert.rejects(other.listen(), { message: `${socketPath} exists and is not a socket; remove it or choose another socket path` });
    assert.equal(fs.readFileSync(socketPath, "utf8"), "precious");
    fs.rmSync(socketPath);
  });
});

describe("socket paths", () => {
  it("defaults to ./.bgworker/bgworker.sock", () => {
    assert.equal(defaultSocketPath("/srv/app"), "/srv/app/.bgworker/bgworker.sock");
  });

  it("falls back to a relative path when the absolute one is too long, and names the limit otherwise", () => {
    const deep = "/" + "d".repeat(120) + "/s.sock";
    assert.equal(socketAddress(deep, "/" + "d".repeat(120)), "s.sock");
    assert.throws(() => socketAddress(deep, "/elsewhere"), {
      message: `socket path ${deep} is ${deep.length} bytes; a Unix socket path must be at most 107 bytes (choose a shorter one with --socket)`,
    });
  });
});

describe("PostmasterClient", () => {
  it("says hello and launches, queries and waits through handles", async () => {
    const c = await client();
    assert.deepEqual([c.postmasterId, c.postmasterPid], ["pm-test", process.pid]);
    const w = await c.loadDynamic(worker().setArgument(7n));
    assert.equal(w.handle, "bgw1:pm-test:0:1");
    assert.equal(w.notifyPid, process.pid);
    assert.equal(handler.slots[0]?.definition.notifyPid, process.pid);
    assert.deepEqual(handler.slots[0]?.definition.argument, { kind: "bigint", value: "7" });
    assert.equal(await w.status(), BackgroundWorkerStatus.NotYetStarted);
    await assert.rejects(w.pid(), (error: unknown) => error instanceof BackgroundWorkerStatusError && error.status === BackgroundWorkerStatus.NotYetStarted);
    const started = w.waitForStartup();
    await waitFor(() => handler.slots[0]?.startupWaiters.length === 1, "the wait to reach the handler");
    handler.start(0, 4242);
    assert.equal(await started, 4242);
    assert.equal(await w.pid(), 4242);
    const rows = await c.status();
    assert.equal(rows.length, 1);
    assert.equal(rows[0]?.pid, 4242);
    const stopped = w.terminate().waitForShutdown();
    await waitFor(() => handler.slots[0]?.shutdownWaiters.length === 1, "the shutdown wait");
    assert.deepEqual(handler.terminated, [{ postmaster: "pm-test", slot: 0, generation: 1 }]);
    handler.exit(0);
    await stopped;
    assert.equal(await w.status(), BackgroundWorkerStatus.Stopped);
  });

  it("pipelines requests and gets waits answered out of order", async () => {
    handler = Object.assign(handler, { maxWorkers: 2 });
    const c = await client();
    const [a, b] = await Promise.all([c.loadDynamic(worker("a")), c.loadDynamic(worker("b"))]);
    assert.ok(a !== undefined && b !== undefined);
    const order: string[] = [];
    const waitA = a.waitForStartup().then((pid) => order.push(`a:${pid}`));
    const waitB = b.waitForStartup().then((pid) => order.push(`b:${pid}`));
    // Many requests in flight at once on one connection, answered while both waits are pending.
    const states = await Promise.all(Array.from({ length: 50 }, (_, i) => (i % 2 === 0 ? a : b).status()));
    assert.ok(states.every((status) => status === BackgroundWorkerStatus.NotYetStarted));
    await waitFor(() => handler.slots.every((slot) => slot?.startupWaiters.length === 1), "both waits");
    handler.start(1, 222);
    await waitB;
    assert.deepEqual(order, ["b:222"]);
    handler.start(0, 111);
    await waitA;
    assert.deepEqual(order, ["b:222", "a:111"]);
  });

  it("re-creates the postmaster's errors with their classes, codes, and the caller's stack", async () => {
    const c = await client();
    await c.loadDynamic(worker("a"));
    await c.loadDynamic(worker("b"));
    const launchThirdWorker = (): Promise<unknown> => c.loadDynamic(worker("c"));
    await assert.rejects(launchThirdWorker(), (error: unknown) => {
      assert.ok(error instanceof NoFreeWorkerSlotError);
      assert.equal(error.message, "no free background worker slot (max_worker_processes = 2)");
      assert.equal(error.code, "ERR_BGWORKER_NO_FREE_SLOT");
      assert.match(error.stack ?? "", /launchThirdWorker/, "the stack shows the line that launched");
      return true;
    });
    await assert.rejects(c.terminate(999999), (error: unknown) => error instanceof Error && error.message === "no background worker with pid 999999");
    handler.slots.splice(0);
    await assert.rejects(c.loadDynamic(worker().setLibrary("shutting-down")), { message: "the postmaster is shutting down: no new background workers" });
  });

  it("reports Untracked to a process that is not the notify pid", async () => {
    const c = await client();
    const untracked = await c.loadDynamic(worker().setNotifyPid(0));
    assert.equal(untracked.notifyPid, 0);
    await assert.rejects(untracked.waitForStartup(), (error: unknown) => error instanceof BackgroundWorkerStatusError && error.status === BackgroundWorkerStatus.Untracked);
    // Another process (here: a raw connection with another pid) attaching to a tracked handle is Untracked too.
    handler.slots.splice(0);
    const tracked = await c.loadDynamic(worker());
    const raw = new RawClient(socketPath);
    raw.send(`{"v":1,"op":"hello","pid":1}\n{"id":1,"op":"waitForStartup","handle":"${tracked.handle}"}\n`);
    assert.deepEqual(await raw.reply(2), { id: 1, ok: true, result: { status: "Untracked" } });
    raw.close();
  });

  it("refuses a notify pid other than its own or 0, and a shared memory startup function", async () => {
    const c = await client();
    await assert.rejects(c.loadDynamic(worker().setNotifyPid(1)), (error: unknown) =>
      error instanceof TypeError && (error as { code?: string }).code === "ERR_BGWORKER_NOTIFY_PID" && /notify pid 1 .* must be 0 or the launching process's pid/.test(error.message));
    await assert.rejects(c.loadDynamic(worker().enableShmemAccess(() => undefined)), (error: unknown) =>
      error instanceof TypeError && (error as { code?: string }).code === "ERR_BGWORKER_STARTUP_HOOK");
    assert.equal(handler.slots.length, 0);
  });

  it("passes terminate by pid or handle, and stop with its mode", async () => {
    const c = await client();
    const w = await c.loadDynamic(worker());
    handler.start(0, 31337);
    await c.terminate(31337);
    await c.terminate(w.handle);
    await assert.rejects(c.terminate("not-a-handle"), TypeError);
    await c.stop("immediate");
    await c.stop();
    assert.deepEqual(handler.terminated, [31337, { postmaster: "pm-test", slot: 0, generation: 1 }]);
    assert.deepEqual(handler.stops, ["immediate", "fast"]);
  });

  it("attaches to a handle string", async () => {
    const c = await client();
    const w = await c.loadDynamic(worker());
    handler.start(0, 5150);
    const attached = c.attach(w.handle);
    assert.equal(await attached.pid(), 5150);
    assert.throws(() => c.attach("bgw1:nope"), TypeError);
  });

  it("becomes the process's launcher, and stops being it when closed", async () => {
    const c = await client();
    assert.equal(processRole()?.kind, "client");
    const w = await worker().loadDynamic();
    assert.equal(w.handle, "bgw1:pm-test:0:1");
    await c.close();
    assert.equal(processRole(), undefined);
    await assert.rejects(worker().loadDynamic(), /call connect\(\) first/);
  });

  it("leaves a postmaster's or a worker's own launcher alone", async () => {
    const own: ProcessRole = { kind: "postmaster", launcher: new Launcher({ request: () => Promise.reject(new Error("unused")) }) };
    takeRole(own);
    await client();
    assert.equal(processRole(), own);
  });

  it("sees PostmasterDied when the postmaster goes away mid-wait, and for later handle calls", async () => {
    const c = await client();
    const w = await c.loadDynamic(worker());
    const waiting = w.waitForStartup();
    await waitFor(() => handler.slots[0]?.startupWaiters.length === 1, "the wait");
    await server.close();
    await assert.rejects(waiting, (error: unknown) => error instanceof BackgroundWorkerStatusError && error.status === BackgroundWorkerStatus.PostmasterDied);
    assert.equal(await w.status(), BackgroundWorkerStatus.PostmasterDied);
    await assert.rejects(w.waitForShutdown(), (error: unknown) => error instanceof BackgroundWorkerStatusError && error.status === BackgroundWorkerStatus.PostmasterDied);
    await assert.rejects(w.terminate().waitForShutdown(), (error: unknown) => error instanceof BackgroundWorkerStatusError && error.status === BackgroundWorkerStatus.PostmasterDied);
    await assert.rejects(c.status(), { message: `the postmaster on ${socketPath} closed the connection` });
    await c.closed;
  });

  it("says no postmaster is running, in one line naming the socket", async () => {
    const missing = path.join(dir, "nowhere", "bgworker.sock");
    await assert.rejects(connect(missing), { message: `no postmaster running on ${missing}` });
    await server.close();
    await assert.rejects(connect(socketPath), { message: `no postmaster running on ${socketPath}` });
  });

  it("tells the postmaster when a client process is gone, once its last connection closes", async () => {
    const first = await client();
    const second = await client();
    await first.close();
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(handler.gone, []);
    await second.close();
    await waitFor(() => handler.gone.length === 1, "clientGone");
    assert.deepEqual(handler.gone, [process.pid]);
  });

  it("lets its process exit once closed, or when idle and forgotten", async () => {
    const script = (close: boolean): string => `
      import { connect } from ${JSON.stringify(new URL("../../src/control/client.ts", import.meta.url).href)};
      const c = await connect(${JSON.stringify(socketPath)});
      await c.status();
      ${close ? "await c.close();" : ""}
      console.log("done");
    `;
    for (const close of [true, false]) {
      const child = spawn(process.execPath, ["--import", TSX, "--input-type=module", "-e", script(close)], { stdio: ["ignore", "pipe", "pipe"] });
      let err = "";
      child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()));
      let out = "";
      child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      const [code, signal] = (await new Promise((resolve) => child.once("exit", (...args) => resolve(args)))) as [number | null, string | null];
      clearTimeout(timer);
      assert.equal(signal, null, `the client process (close: ${close}) did not exit by itself`);
      assert.equal(code, 0, err);
      assert.equal(out.trim(), "done");
    }
  });
});

describe("ControlServer: malformed and hostile input", () => {
  it("answers malformed frames with errors and keeps the connection", async () => {
    const raw = new RawClient(socketPath);
    raw.send('{"v":1,"op":"hello","pid":777,"id":"h"}\n');
    assert.deepEqual(await raw.reply(1), { id: "h", ok: true, result: { v: 1, postmaster: "pm-test", pid: process.pid } });
    raw.send("not json\n");
    raw.send('{"id":1,"op":"dance"}\n');
    raw.send('{"id":2,"op":"stop","mode":"gentle"}\n');
    raw.send('{"id":3,"op":"launch","definition":{"name":5}}\n');
    raw.send(Buffer.from([0xc3, 0x28, 0x0a]).toString("latin1"));
    raw.send('{"id":4,"op":"status"}\n');
    const [json, op, mode, def] = [await raw.reply(2), await raw.reply(3), await raw.reply(4), await raw.reply(5)];
    assert.equal(json.id, null);
    assert.match((json.error as { message: string }).message, /^frame is not valid JSON/);
    assert.deepEqual(op, { id: 1, ok: false, error: { name: "ProtocolError", message: 'unknown op "dance" (expected one of status, launch, state, waitForStartup, waitForShutdown, terminate, restart, stop, reload, clusterStatus)', code: "ERR_BGWORKER_PROTOCOL" } });
    assert.deepEqual(mode, { id: 2, ok: false, error: { name: "ProtocolError", message: 'stop: mode "gentle" must be one of smart, fast, immediate', code: "ERR_BGWORKER_PROTOCOL" } });
    assert.deepEqual(def.error, { name: "TypeError", message: 'invalid worker definition: field "type" is missing', code: "ERR_BGWORKER_INVALID_DEFINITION" });
    const last = await raw.reply(7);
    assert.equal(last.id, 4);
    assert.equal(last.ok, true);
    raw.close();
  });

  it("refuses a connection that does not start with a valid hello", async () => {
    const raw = new RawClient(socketPath);
    raw.send('{"id":1,"op":"status"}\n');
    const reply = await raw.reply(1);
    assert.match((reply.error as { message: string }).message, /^the first frame must be a hello/);
    await raw.ended;
    const old = new RawClient(socketPath);
    old.send('{"v":0,"op":"hello","pid":1}\n');
    assert.match(((await old.reply(1)).error as { message: string }).message, /protocol version 0 is not supported/);
    await old.ended;
  });

  it("closes a connection whose first frame is not valid UTF-8, so that a later hello is never read", async () => {
    const raw = new RawClient(socketPath);
    raw.socket.write(Buffer.from([0xff, 0xfe, 0x0a]));
    raw.send('{"v":1,"op":"hello","pid":777,"id":"late"}\n');
    const reply = await raw.reply(1);
    assert.deepEqual(reply, { id: null, ok: false, error: { name: "ProtocolError", message: "frame is not valid UTF-8", code: "ERR_BGWORKER_PROTOCOL" } });
    await raw.ended;
    assert.equal(raw.replies.length, 1, "the hello after the bad frame got no reply");
    assert.ok(logLines.some((line) => line.includes("closing connection of client (before hello): frame is not valid UTF-8")));
  });

  it("answers an oversized frame with an error, closes that connection only, and serves the others", async () => {
    const bystander = await client();
    const raw = new RawClient(socketPath);
    raw.send('{"v":1,"op":"hello","pid":888}\n');
    await raw.reply(1);
    raw.send("{" + " ".repeat(MAX_FRAME_BYTES + 10));
    const reply = await raw.reply(2);
    assert.equal(reply.ok, false);
    assert.match((reply.error as { message: string }).message, new RegExp(`exceeds the limit of ${MAX_FRAME_BYTES} bytes`));
    await raw.ended;
    assert.ok(logLines.some((line) => line.includes("closing connection of client 888")));
    await waitFor(() => handler.gone.includes(888), "the oversized client to be forgotten");
    assert.equal((await bystander.status()).length, 0);
    const w = await bystander.loadDynamic(worker());
    assert.equal(await w.status(), BackgroundWorkerStatus.NotYetStarted);
  });

  it("survives clients that vanish with requests in flight", async () => {
    const c = await client();
    const w = await c.loadDynamic(worker());
    const raw = new RawClient(socketPath);
    raw.send(`{"v":1,"op":"hello","pid":${process.pid}}\n{"id":1,"op":"waitForStartup","handle":"${w.handle}"}\n`);
    await raw.reply(1);
    await waitFor(() => handler.slots[0]?.startupWaiters.length === 1, "the raw wait");
    raw.close();
    await raw.ended;
    handler.start(0, 1001); // answers a wait whose connection is gone
    assert.equal(await c.attach(w.handle).pid(), 1001);
  });
});
