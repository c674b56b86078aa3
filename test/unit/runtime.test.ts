/** The worker-side pieces that need no process: latch, signal flags, the API outside a worker, log lines. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatText, Logger, pgTimestamp } from "../../src/log.js";
import { Latch } from "../../src/runtime/latch.js";
import { SignalWakeFlags, signalsOf } from "../../src/runtime/signals.js";
import { BackgroundWorker } from "../../src/runtime/worker.js";

describe("Latch", () => {
  it("returns at once when already set, and resets", async () => {
    const latch = new Latch();
    latch.set();
    assert.equal(await latch.wait(null), "latch");
    assert.equal(await latch.wait(10), "timeout", "the first wait reset it");
  });

  it("wakes a waiter when set from elsewhere", async () => {
    const latch = new Latch();
    const waiting = latch.wait(null);
    setImmediate(() => latch.set());
    assert.equal(await waiting, "latch");
  });

  it("stays stopped once termination or postmaster death is seen; death wins", async () => {
    const latch = new Latch();
    latch.stop("terminate");
    assert.equal(await latch.wait(null), "terminate");
    assert.equal(await latch.wait(null), "terminate", "it keeps returning the stop");
    latch.stop("postmaster-death");
    latch.stop("terminate");
    assert.equal(await latch.wait(5), "postmaster-death");
  });

  it("refuses two concurrent waits", async () => {
    const latch = new Latch();
    const first = latch.wait(null);
    await assert.rejects(latch.wait(null), /another waitLatch\(\) of this worker is already waiting/);
    latch.set();
    await first;
  });
});

describe("SignalWakeFlags", () => {
  it("combines with |", () => {
    assert.deepEqual(signalsOf(SignalWakeFlags.SIGHUP | SignalWakeFlags.SIGTERM), ["SIGHUP", "SIGTERM"]);
    assert.deepEqual(signalsOf(0), []);
  });

  it("refuses anything else with a one-line TypeError", () => {
    for (const bad of [16, -1, 1.5, "SIGHUP"]) {
      assert.throws(() => signalsOf(bad as number), {
        name: "TypeError",
        message: `attachSignalHandlers: flags ${String(bad)} must combine SignalWakeFlags.SIGHUP, SIGTERM, SIGINT and SIGCHLD with |`,
      });
    }
  });
});

describe("BackgroundWorker outside a worker", () => {
  it("every call throws 'not in a background worker'", async () => {
    const calls: [string, () => unknown][] = [
      ["getName", () => BackgroundWorker.getName()],
      ["getType", () => BackgroundWorker.getType()],
      ["getExtra", () => BackgroundWorker.getExtra()],
      ["getExtraBytes", () => BackgroundWorker.getExtraBytes()],
      ["getArgument", () => BackgroundWorker.getArgument()],
      ["attachSignalHandlers", () => BackgroundWorker.attachSignalHandlers(SignalWakeFlags.SIGHUP)],
      ["sighupReceived", () => BackgroundWorker.sighupReceived()],
      ["sigtermReceived", () => BackgroundWorker.sigtermReceived()],
      ["sigintReceived", () => BackgroundWorker.sigintReceived()],
      ["sigchldReceived", () => BackgroundWorker.sigchldReceived()],
      ["setLatch", () => BackgroundWorker.setLatch()],
      ["postmasterIsAlive", () => BackgroundWorker.postmasterIsAlive()],
    ];
    for (const [name, call] of calls) {
      assert.throws(call, { message: `BackgroundWorker.${name}: not in a background worker` });
    }
    for (const [name, call] of [
      ["waitLatch", () => BackgroundWorker.waitLatch(1)],
      ["connectWorkerToSpi", () => BackgroundWorker.connectWorkerToSpi()],
      ["transaction", () => BackgroundWorker.transaction(() => 1)],
    ] as const) {
      await assert.rejects(call(), { message: `BackgroundWorker.${name}: not in a background worker` });
    }
  });
});

describe("log lines", () => {
  it("uses PostgreSQL's %m timestamp", () => {
    assert.equal(pgTimestamp(new Date("2026-11-24T13:10:00.123Z")), "2026-11-24 13:10:00.123 UTC");
  });

  it("writes postmaster events, worker output and details as PostgreSQL's server log does", () => {
    const lines: string[] = [];
    const logger = new Logger({ format: "text", sink: (line) => lines.push(line), pid: 42 });
    logger.log("LOG", 'background worker "t" (PID 7) exited with exit code 1', { worker: { name: "n", type: "t", pid: 7 } });
    logger.output({ name: "n", type: "t", pid: 7 }, "stdout", "hello");
    logger.fromWorker({ name: "n", type: "t", pid: 7 }, "ERROR", "boom", "at x");
    assert.match(lines[0]!, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC \[42\] LOG: {2}background worker "t" \(PID 7\) exited with exit code 1$/);
    assert.match(lines[1]!, /UTC \[7\] t: hello$/);
    assert.match(lines[2]!, /UTC \[7\] ERROR: {2}boom\n.* UTC \[7\] DETAIL: {2}at x$/);
  });

  it("writes one JSON object per line in json mode, and hides DEBUG unless asked", () => {
    const lines: string[] = [];
    const logger = new Logger({ format: "json", sink: (line) => lines.push(line), pid: 42, debug: false });
    logger.log("DEBUG", "hidden");
    logger.output({ name: "n", type: "t", pid: 7 }, "stderr", "oops");
    assert.equal(lines.length, 1);
    const record = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.deepEqual({ ...record, time: "T" }, { time: "T", pid: 7, level: "LOG", message: "oops", worker: { name: "n", type: "t", pid: 7 }, stream: "stderr" });
    assert.equal(formatText({ time: "2026-11-24T13:10:00.123Z", pid: 1, level: "WARNING", message: "m" }), "2026-11-24 13:10:00.123 UTC [1] WARNING:  m");
  });
});
