/** The postmaster's rules, over event sequences, without processes. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BackgroundWorkerBuilder, definitionOf } from "../../src/builder.js";
import { BgWorkerStartTime, type WorkerDefinition } from "../../src/definition.js";
import { BackgroundWorkerStatus, NoFreeWorkerSlotError } from "../../src/errors.js";
import { PostmasterMachine, type Action, type MachineEvent } from "../../src/postmaster/machine.js";
import { classifyExit, dampingDelay, mayStart, nextFastFailures, DEFAULT_RESTART_BACKOFF } from "../../src/postmaster/rules.js";
import { launch, logLines, restart, terminatePid } from "../helpers/machine.js";

type Configure = (builder: BackgroundWorkerBuilder) => BackgroundWorkerBuilder;

function definition(name: string, configure: Configure = (b) => b, notifyPid = 0): WorkerDefinition {
  const builder = configure(new BackgroundWorkerBuilder(name).setLibrary("./lib.ts").setFunction("main"));
  if (notifyPid !== 0) builder.setNotifyPid(notifyPid);
  return definitionOf(builder);
}

function machine(options: { max?: number; database?: boolean; cluster?: boolean } = {}): PostmasterMachine {
  return new PostmasterMachine({
    postmasterId: "pm",
    maxWorkerProcesses: options.max ?? 8,
    databaseServed: options.database ?? true,
    shutdownTimeoutMs: 10_000,
    cluster: options.cluster ?? false,
  });
}

const of = <T extends Action["type"]>(actions: readonly Action[], type: T) =>
  actions.filter((a): a is Extract<Action, { type: T }> => a.type === type);

/** Carries spawns through to a running process with the next pid, as the shell would. */
class Harness {
  now = 1_000_000;
  nextPid = 100;
  readonly log: Action[] = [];
  constructor(readonly m: PostmasterMachine) {}

  run(actions: Action[]): Action[] {
    const all = [...actions];
    for (const spawn of of(actions, "spawn")) {
      const pid = this.nextPid++;
      all.push(...this.run(this.m.handle({ kind: "handed-over", slot: spawn.slot, generation: spawn.generation, pid, at: this.now }).actions));
      all.push(...this.run(this.m.handle({ kind: "entered", pid, at: this.now }).actions));
    }
    this.log.push(...all);
    return all;
  }

  pidOf(name: string): number | null {
    return this.m.rows().find((r) => r.name === name)?.pid ?? null;
  }

  row(name: string) {
    const row = this.m.rows().find((r) => r.name === name);
    assert.ok(row, `no row for ${name}`);
    return row;
  }

  exit(name: string, code: number | null, signal: string | null = null): Action[] {
    const pid = this.pidOf(name);
    assert.ok(pid !== null, `${name} has no pid`);
    return this.run(this.m.handle({ kind: "exited", pid, code, signal, at: this.now }).actions);
  }

  fire(actions: readonly Action[]): Action[] {
    const timers = of(actions, "setTimer");
    assert.ok(timers.length > 0, "expected a timer");
    const out: Action[] = [];
    for (const timer of timers) {
      this.now += timer.delayMs;
      out.push(...this.run(this.m.handle({ kind: "timer", key: timer.key }).actions));
    }
    return out;
  }
}

describe("rules", () => {
  it("lets each start time run in the phases PostgreSQL allows", () => {
    const table = [
      [BgWorkerStartTime.PostmasterStart, [true, true, true]],
      [BgWorkerStartTime.ConsistentState, [false, true, true]],
      [BgWorkerStartTime.RecoveryFinished, [false, false, true]],
    ] as const;
    for (const [startTime, expected] of table) {
      assert.deepEqual(
        (["starting", "consistent", "running"] as const).map((phase) => mayStart(startTime, phase)),
        expected,
      );
    }
  });

  it("classifies exits as done, failed or crashed", () => {
    assert.equal(classifyExit(0, null), "done");
    assert.equal(classifyExit(1, null), "failed");
    assert.equal(classifyExit(2, null), "crashed");
    assert.equal(classifyExit(null, "SIGKILL"), "crashed");
    assert.equal(classifyExit(null, "SIGTERM"), "crashed");
  });

  it("counts fast failures, keeps the count for middling runs, clears it after a long run", () => {
    const b = DEFAULT_RESTART_BACKOFF;
    assert.equal(nextFastFailures(0, 999, b), 1);
    assert.equal(nextFastFailures(3, 5_000, b), 3);
    assert.equal(nextFastFailures(7, 10_000, b), 0);
  });

  it("damps from the fifth fast failure, doubling, capped", () => {
    const b = DEFAULT_RESTART_BACKOFF;
    assert.deepEqual([0, 4, 5, 6, 7, 30].map((n) => dampingDelay(n, b)), [0, 0, 100, 200, 400, 30_000]);
  });
});

describe("PostmasterMachine", () => {
  it("starts PostmasterStart workers at once and the others when the phase allows", () => {
    const m = machine();
    m.handle({ kind: "register-static", definition: definition("early") });
    m.handle({ kind: "register-static", definition: definition("consistent", (b) => b.setStartTime(BgWorkerStartTime.ConsistentState)) });
    m.handle({ kind: "register-static", definition: definition("late", (b) => b.setStartTime(BgWorkerStartTime.RecoveryFinished)) });
    const h = new Harness(m);
    assert.deepEqual(of(h.run(m.handle({ kind: "start" }).actions), "spawn").map((s) => s.definition.name), ["early"]);
    assert.equal(h.row("late").state, "waiting");
    assert.deepEqual(of(h.run(m.handle({ kind: "phase", phase: "consistent" }).actions), "spawn").map((s) => s.definition.name), ["consistent"]);
    assert.deepEqual(of(h.run(m.handle({ kind: "phase", phase: "running" }).actions), "spawn").map((s) => s.definition.name), ["late"]);
    assert.deepEqual(m.rows().map((r) => r.state), ["running", "running", "running"]);
  });

  it("unregisters a worker that exits 0, whatever its restart time", () => {
    const m = machine();
    m.handle({ kind: "register-static", definition: definition("w", (b) => b.setRestartTime(0)) });
    const h = new Harness(m);
    h.run(m.handle({ kind: "start" }).actions);
    const actions = h.exit("w", 0);
    assert.equal(of(actions, "setTimer").length, 0);
    assert.equal(h.row("w").state, "stopped");
    assert.deepEqual(h.row("w").lastExit?.code, 0);
  });

  it("restarts a worker with restart time 0 at its exit, with no timer, as PostgreSQL does in the pass that reaps it", () => {
    const m = machine();
    m.handle({ kind: "register-static", definition: definition("w", (b) => b.setRestartTime(0)) });
    const h = new Harness(m);
    h.run(m.handle({ kind: "start" }).actions);
    const first = h.pidOf("w");
    h.now += 5_000;
    const actions = h.exit("w", 1);
    assert.equal(of(actions, "setTimer").length, 0);
    assert.deepEqual(of(actions, "spawn").map((s) => [s.definition.name, s.restart]), [["w", true]]);
    assert.equal(h.row("w").state, "running");
    assert.notEqual(h.pidOf("w"), first);
    assert.equal(h.row("w").restarts, 1);
  });

  it("restarts a worker that exits 1 after exactly its restart time, with a new pid", () => {
    const m = machine();
    m.handle({ kind: "register-static", definition: definition("w", (b) => b.setRestartTime(250)) });
    const h = new Harness(m);
    h.run(m.handle({ kind: "start" }).actions);
    const first = h.pidOf("w");
    h.now += 5_000;
    const actions = h.exit("w", 1);
    assert.deepEqual(of(actions, "setTimer").map((t) => t.delayMs), [250]);
    assert.equal(h.row("w").state, "backoff");
    assert.equal(h.row("w").backoffMs, 250);
    h.fire(actions);
    assert.equal(h.row("w").state, "running");
    assert.notEqual(h.pidOf("w"), first);
    assert.equal(h.row("w").restarts, 1);
  });

  it("forgets a never-restart worker that exits 1", () => {
    const m = machine();
    m.handle({ kind: "register-static", definition: definition("w") });
    const h = new Harness(m);
    h.run(m.handle({ kind: "start" }).actions);
    assert.equal(of(h.exit("w", 1), "setTimer").length, 0);
    assert.equal(h.row("w").state, "stopped");
  });

  it("handles a crash of a worker without shared memory like exit 1", () => {
    const m = machine();
    m.handle({ kind: "register-static", definition: definition("plain", (b) => b.setRestartTime(100)) });
    m.handle({ kind: "register-static", definition: definition("other", (b) => b.setRestartTime(100)) });
    const h = new Harness(m);
    h.run(m.handle({ kind: "start" }).actions);
    h.now += 5_000;
    const actions = h.exit("plain", null, "SIGKILL");
    assert.equal(of(actions, "signal").length, 0, "no other worker is touched");
    assert.equal(of(actions, "resetShmem").length, 0);
    assert.deepEqual(of(actions, "setTimer").map((t) => t.delayMs), [100]);
    assert.equal(h.row("other").state, "running");
  });

  it("applies the crash rule to shared-memory workers only", () => {
    const m = machine();
    m.handle({ kind: "register-static", definition: definition("crasher", (b) => b.enableShmemAccess().setRestartTime(60_000)) });
    m.handle({ kind: "register-static", definition: definition("peer", (b) => b.enableShmemAccess().setRestartTime(60_000)) });
    m.handle({ kind: "register-static", definition: definition("once", (b) => b.enableShmemAccess()) });
    m.handle({ kind: "register-static", definition: definition("bystander", (b) => b.setRestartTime(60_000)) });
    const h = new Harness(m);
    h.run(m.handle({ kind: "start" }).actions);
    const peer = h.pidOf("peer");
    const once = h.pidOf("once");
    const bystander = h.pidOf("bystander");
    h.now += 5_000;
    const crash = h.exit("crasher", null, "SIGSEGV");
    assert.deepEqual(
      of(crash, "signal").map((s) => [s.pid, s.signal]).sort(),
      [[peer, "SIGKILL"], [once, "SIGKILL"]].sort(),
    );
    assert.equal(of(crash, "resetShmem").length, 0, "the segment is re-created only once every shmem worker is gone");
    h.run(m.handle({ kind: "exited", pid: peer!, code: null, signal: "SIGKILL", at: h.now }).actions);
    const last = h.run(m.handle({ kind: "exited", pid: once!, code: null, signal: "SIGKILL", at: h.now }).actions);
    assert.equal(of(last, "resetShmem").length, 1);
    const restart = h.run(m.handle({ kind: "shmem-reset" }).actions);
    assert.deepEqual(of(restart, "spawn").map((s) => s.definition.name).sort(), ["crasher", "peer"], "restartable ones restart at once");
    assert.equal(h.row("once").state, "stopped", "never-restart ones are forgotten");
    assert.equal(h.pidOf("bystander"), bystander, "workers without shared memory are untouched");
  });

  it("does not start shared-memory workers while the segment is being re-created", () => {
    const m = machine();
    m.handle({ kind: "register-static", definition: definition("a", (b) => b.enableShmemAccess().setRestartTime(0)) });
    m.handle({ kind: "register-static", definition: definition("b", (b) => b.enableShmemAccess().setRestartTime(0)) });
    const h = new Harness(m);
    h.run(m.handle({ kind: "start" }).actions);
    h.now += 5_000;
    h.exit("a", 3);
    assert.equal(h.row("a").state, "waiting");
    const dyn = launch(m, definition("late", (b) => b.enableShmemAccess()));
    assert.equal(of(dyn.actions, "spawn").length, 0);
  });

  it("damps a restart storm and resets after a long run", () => {
    const m = machine();
    m.handle({ kind: "register-static", definition: definition("w", (b) => b.setRestartTime(10)) });
    const h = new Harness(m);
    h.run(m.handle({ kind: "start" }).actions);
    const delays: number[] = [];
    for (let i = 0; i < 8; i++) {
      h.now += 50;
      const actions = h.exit("w", 1);
      delays.push(...of(actions, "setTimer").map((t) => t.delayMs));
      h.fire(actions);
    }
    assert.deepEqual(delays, [10, 10, 10, 10, 100, 200, 400, 800]);
    assert.ok(logLines(h.log).some((line) => line.includes("failed 5 times in a row")));
    h.now += 10_000;
    assert.deepEqual(of(h.exit("w", 1), "setTimer").map((t) => t.delayMs), [10]);
  });

  it("measures a run from the moment the function is entered, so slow imports are not held against it", () => {
    const m = new PostmasterMachine({
      postmasterId: "pm",
      maxWorkerProcesses: 2,
      databaseServed: false,
      shutdownTimeoutMs: 1_000,
      restartBackoff: { failures: 1, fastFailureMs: 1_000, initialDelayMs: 500, maxDelayMs: 30_000, resetAfterMs: 10_000 },
    });
    m.handle({ kind: "register-static", definition: definition("slow-import", (b) => b.setRestartTime(10)) });
    const [spawn] = of(m.handle({ kind: "start" }).actions, "spawn");
    assert.ok(spawn);
    m.handle({ kind: "handed-over", slot: spawn.slot, generation: spawn.generation, pid: 100, at: 0 });
    m.handle({ kind: "entered", pid: 100, at: 3_000 });
    const exit = m.handle({ kind: "exited", pid: 100, code: 1, signal: null, at: 3_200 }).actions;
    assert.deepEqual(of(exit, "setTimer").map((t) => t.delayMs), [500], "200 ms after entering is a fast failure");
  });

  it("shares slots between static and dynamic workers and reuses them with a new generation", () => {
    const m = machine({ max: 2 });
    m.handle({ kind: "register-static", definition: definition("static") });
    const h = new Harness(m);
    h.run(m.handle({ kind: "start" }).actions);
    const { ref, actions } = launch(m, definition("d1", (b) => b, 42));
    h.run(actions);
    assert.throws(() => launch(m, definition("d2")), NoFreeWorkerSlotError);
    assert.equal(m.handleState(ref).status, BackgroundWorkerStatus.Started);
    h.exit("d1", 0);
    assert.equal(m.handleState(ref).status, BackgroundWorkerStatus.Stopped);
    assert.equal(m.notifyPidOf(ref), 42, "who may wait is still known after the worker stopped");
    const second = launch(m, definition("d2"));
    h.run(second.actions);
    assert.equal(second.ref.slot, ref.slot);
    assert.equal(second.ref.generation, ref.generation + 1);
    assert.equal(m.handleState(ref).status, BackgroundWorkerStatus.Stopped, "an old handle never sees the new worker");
    assert.equal(m.notifyPidOf(ref), undefined, "nor its notify pid");
  });

  it("refuses more static workers than slots, and SPI workers without a database", () => {
    const m = machine({ max: 1, database: false });
    m.handle({ kind: "register-static", definition: definition("one") });
    assert.throws(() => m.handle({ kind: "register-static", definition: definition("two") }).actions, /all 1 worker slots \(maxWorkerProcesses\) are taken/);
    const spi = machine({ database: false });
    assert.throws(() => spi.handle({ kind: "register-static", definition: definition("db", (b) => b.enableSpiAccess()) }).actions, /serves no database/);
  });

  it("terminates: SIGTERM when running, never restarted; unregistered at once when not started", () => {
    const m = machine();
    const h = new Harness(m);
    h.run(m.handle({ kind: "start" }).actions);
    const running = launch(m, definition("r", (b) => b.setRestartTime(0)));
    h.run(running.actions);
    const pid = h.pidOf("r");
    assert.deepEqual(of(h.run(m.handle({ kind: "terminate", target: { handle: running.ref } }).actions), "signal"), [{ type: "signal", pid, signal: "SIGTERM" }]);
    assert.equal(of(h.exit("r", 1), "setTimer").length, 0, "a terminated worker is not restarted");
    assert.equal(m.handleState(running.ref).status, BackgroundWorkerStatus.Stopped);
    const waiting = launch(m, definition("w", (b) => b.setStartTime(BgWorkerStartTime.RecoveryFinished)));
    assert.equal(m.handleState(waiting.ref).status, BackgroundWorkerStatus.NotYetStarted);
    h.run(m.handle({ kind: "terminate", target: { handle: waiting.ref } }).actions);
    assert.equal(m.handleState(waiting.ref).status, BackgroundWorkerStatus.Stopped);
  });

  it("terminates SPI workers when the database is lost and starts them again when it is back", () => {
    const m = machine();
    m.handle({ kind: "register-static", definition: definition("spi", (b) => b.enableSpiAccess().setRestartTime(100)) });
    m.handle({ kind: "register-static", definition: definition("plain", (b) => b.setRestartTime(100)) });
    const h = new Harness(m);
    h.run(m.handle({ kind: "start" }).actions);
    h.run(m.handle({ kind: "phase", phase: "running" }).actions);
    const spiPid = h.pidOf("spi");
    const lost = h.run(m.handle({ kind: "phase", phase: "starting" }).actions);
    assert.deepEqual(of(lost, "signal"), [{ type: "signal", pid: spiPid, signal: "SIGTERM" }]);
    h.now += 5_000;
    const exit = h.exit("spi", 1);
    h.fire(exit);
    assert.equal(h.row("spi").state, "waiting", "the phase is not back yet");
    assert.deepEqual(of(h.run(m.handle({ kind: "phase", phase: "running" }).actions), "spawn").map((s) => s.definition.name), ["spi"]);
    assert.equal(h.row("plain").state, "running");
  });

  it("fast shutdown: SIGTERM to all, SIGKILL after the timeout, complete when all are gone", () => {
    const m = machine();
    m.handle({ kind: "register-static", definition: definition("a", (b) => b.setRestartTime(0)) });
    m.handle({ kind: "register-static", definition: definition("b", (b) => b.setStartTime(BgWorkerStartTime.RecoveryFinished)) });
    const h = new Harness(m);
    h.run(m.handle({ kind: "start" }).actions);
    const actions = h.run(m.handle({ kind: "shutdown", mode: "fast" }).actions);
    assert.deepEqual(of(actions, "signal").map((s) => s.signal), ["SIGTERM"]);
    assert.equal(h.row("b").state, "stopped", "never-started workers are forgotten");
    assert.throws(() => launch(m, definition("late")), /shutting down/);
    const kill = h.fire(of(actions, "setTimer"));
    assert.deepEqual(of(kill, "signal").map((s) => s.signal), ["SIGKILL"]);
    const done = h.exit("a", null, "SIGKILL");
    assert.equal(of(done, "setTimer").length, 0, "no restart during shutdown");
    assert.deepEqual(of(done, "shutdownComplete"), [{ type: "shutdownComplete", mode: "fast" }]);
  });

  it("smart shutdown lets dynamic workers finish, then stops the rest", () => {
    const m = machine();
    m.handle({ kind: "register-static", definition: definition("static") });
    const h = new Harness(m);
    h.run(m.handle({ kind: "start" }).actions);
    h.run(launch(m, definition("dynamic")).actions);
    const smart = h.run(m.handle({ kind: "shutdown", mode: "smart" }).actions);
    assert.equal(of(smart, "signal").length, 0);
    const after = h.exit("dynamic", 0);
    assert.deepEqual(of(after, "signal").map((s) => [s.pid, s.signal]), [[h.pidOf("static"), "SIGTERM"]]);
    assert.equal(of(h.exit("static", 1), "shutdownComplete").length, 1);
  });

  it("immediate shutdown SIGKILLs at once and may follow a smart one", () => {
    const m = machine();
    m.handle({ kind: "register-static", definition: definition("a") });
    const h = new Harness(m);
    h.run(m.handle({ kind: "start" }).actions);
    h.run(m.handle({ kind: "shutdown", mode: "smart" }).actions);
    const immediate = h.run(m.handle({ kind: "shutdown", mode: "immediate" }).actions);
    assert.deepEqual(of(immediate, "signal").map((s) => s.signal), ["SIGKILL"]);
    assert.equal(of(h.run(m.handle({ kind: "shutdown", mode: "fast" }).actions), "signal").length, 0, "a weaker mode does not follow a stronger one");
  });

  it("cancels notifications of a process that is gone, keeping its workers", () => {
    const m = machine();
    const h = new Harness(m);
    h.run(m.handle({ kind: "start" }).actions);
    const { ref, actions } = launch(m, definition("d", (b) => b, 4242));
    h.run(actions);
    assert.equal(m.notifyPidOf(ref), 4242);
    m.handle({ kind: "client-gone", pid: 4242 });
    assert.equal(m.notifyPidOf(ref), 0);
    assert.equal(m.handleState(ref).status, BackgroundWorkerStatus.Started);
  });

  it("names timers by slot and generation: a restart timer of a reused slot's old worker does nothing", () => {
    const m = machine();
    const h = new Harness(m);
    h.run(m.handle({ kind: "start" }).actions);
    const first = launch(m, definition("flaky", (b) => b.setRestartTime(100)));
    h.run(first.actions);
    const [restart] = of(h.exit("flaky", 1), "setTimer");
    assert.deepEqual(restart?.key, { kind: "restart", slot: 0, generation: 1 });
    assert.deepEqual(of(h.run(m.handle({ kind: "terminate", target: { handle: first.ref } }).actions), "clearTimer").map((a) => a.key), [restart?.key], "unregistering clears its timer");
    const second = launch(m, definition("next"));
    assert.equal(second.ref.slot, 0, "the slot is reused");
    assert.equal(second.ref.generation, 2);
    h.run(second.actions);
    assert.deepEqual(h.run(m.handle({ kind: "timer", key: restart!.key }).actions), [], "the old worker's timer finds no worker to restart");
    assert.equal(h.row("next").restarts, 0);
  });

  it("keeps the pid map: an exit is matched by pid; an unknown pid only cancels what it was notified of", () => {
    const m = machine();
    m.handle({ kind: "register-static", definition: definition("w", (b) => b.setRestartTime(0)) });
    const h = new Harness(m);
    h.run(m.handle({ kind: "start" }).actions);
    const pid = h.pidOf("w")!;
    assert.deepEqual(m.workerOfPid(pid), { name: "w", type: "w", pid });
    const { ref, actions } = launch(m, definition("d", (b) => b, 777));
    h.run(actions);
    assert.deepEqual(h.run(m.handle({ kind: "exited", pid: 777, code: 0, signal: null, at: h.now }).actions), [], "a client's pid is no worker");
    assert.equal(m.notifyPidOf(ref), 0);
    assert.equal(m.workerOfPid(777), undefined, "a process that is no worker has no name (a spare runner)");
    h.exit("w", 1);
    assert.equal(terminatePid(m, pid).found, false, "forgotten at its exit");
    assert.equal(m.handedOverAt(pid), undefined);
    assert.deepEqual(h.run(m.handle({ kind: "exited", pid, code: 0, signal: null, at: h.now }).actions), [], "a second exit of the same pid changes nothing");
  });

  it("knows each worker process: when it was forked, its database session, its name for output drained after its exit", () => {
    const m = machine();
    m.handle({ kind: "register-static", definition: definition("w", (b) => b.setRestartTime(0)) });
    m.handle({ kind: "begin" });
    const spawn = of(m.handle({ kind: "start" }).actions, "spawn")[0]!;
    m.handle({ kind: "handed-over", slot: spawn.slot, generation: spawn.generation, pid: 100, at: 5_000 });
    assert.equal(m.handedOverAt(100), 5_000);
    assert.equal(m.rows()[0]?.backendPid, null, "no session yet");
    m.handle({ kind: "entered", pid: 100, at: 7_000 });
    assert.equal(m.handedOverAt(100), 5_000, "uptime counts from the fork, not from entering the function");
    assert.deepEqual(m.handle({ kind: "session", pid: 100, backendPid: 4321 }).actions, []);
    assert.deepEqual(m.handle({ kind: "session", pid: 555, backendPid: 9999 }).actions, [], "a session of a process that is no worker is ignored");
    assert.equal(m.rows()[0]?.backendPid, 4321);
    const next = of(m.handle({ kind: "exited", pid: 100, code: 1, signal: null, at: 8_000 }).actions, "spawn")[0]!;
    assert.equal(m.rows()[0]?.backendPid, null, "the session went with the process");
    assert.deepEqual(m.workerOfPid(100), { name: "w", type: "w", pid: 100 }, "its last lines are still named after it");
    m.handle({ kind: "handed-over", slot: next.slot, generation: next.generation, pid: 101, at: 9_000 });
    assert.equal(m.handedOverAt(101), 9_000);
    assert.equal(m.rows()[0]?.backendPid, null, "a new process has no session until it opens one");
    assert.deepEqual(m.workerOfPid(101), { name: "w", type: "w", pid: 101 });
  });

  it("a terminated worker killed in a crash-restart stays unregistered, and causes no second crash-restart", () => {
    const m = machine();
    m.handle({ kind: "register-static", definition: definition("crasher", (b) => b.enableShmemAccess().setRestartTime(60_000)) });
    m.handle({ kind: "register-static", definition: definition("leaving", (b) => b.enableShmemAccess().setRestartTime(0)) });
    const h = new Harness(m);
    h.run(m.handle({ kind: "start" }).actions);
    const leaving = h.pidOf("leaving")!;
    h.run(terminatePid(m, leaving).actions);
    h.now += 5_000;
    assert.deepEqual(of(h.exit("crasher", null, "SIGSEGV"), "signal"), [{ type: "signal", pid: leaving, signal: "SIGKILL" }]);
    const gone = h.run(m.handle({ kind: "exited", pid: leaving, code: null, signal: "SIGKILL", at: h.now }).actions);
    assert.equal(logLines(gone).filter((line) => /terminating any other/.test(line)).length, 0);
    assert.equal(of(gone, "resetShmem").length, 1);
    assert.deepEqual(of(h.run(m.handle({ kind: "shmem-reset" }).actions), "spawn").map((s) => s.definition.name), ["crasher"]);
    assert.equal(h.row("leaving").state, "stopped");
  });

  it("a worker killed in a crash-restart while restarting at request comes back with the segment, not before", () => {
    const m = machine();
    m.handle({ kind: "register-static", definition: definition("crasher", (b) => b.enableShmemAccess().setRestartTime(60_000)) });
    m.handle({ kind: "register-static", definition: definition("asked", (b) => b.enableShmemAccess().setRestartTime(60_000)) });
    const h = new Harness(m);
    h.run(m.handle({ kind: "start" }).actions);
    m.handle({ kind: "ready" });
    const asked = h.pidOf("asked")!;
    h.run(restart(m, { pid: asked }).actions);
    h.now += 5_000;
    h.exit("crasher", null, "SIGSEGV");
    const gone = h.run(m.handle({ kind: "exited", pid: asked, code: null, signal: "SIGKILL", at: h.now }).actions);
    assert.equal(of(gone, "spawn").length, 0, "not started again at once");
    assert.equal(of(gone, "resetShmem").length, 1);
    assert.deepEqual(of(h.run(m.handle({ kind: "shmem-reset" }).actions), "spawn").map((s) => s.definition.name).sort(), ["asked", "crasher"]);
  });

  it("a termination drops a restart asked for earlier: the worker is not started again", () => {
    const m = machine();
    m.handle({ kind: "register-static", definition: definition("w", (b) => b.setRestartTime(0)) });
    const h = new Harness(m);
    h.run(m.handle({ kind: "start" }).actions);
    m.handle({ kind: "ready" });
    const pid = h.pidOf("w")!;
    h.run(restart(m, { pid }).actions);
    h.run(terminatePid(m, pid).actions);
    const gone = h.exit("w", 0);
    assert.equal(of(gone, "spawn").length, 0);
    assert.equal(h.row("w").state, "stopped");
  });

  it("owns the postmaster's lifecycle: registration only while loading, launches refused once shutting down", () => {
    const m = machine();
    assert.equal(m.lifecycle, "new");
    m.handle({ kind: "begin" });
    assert.equal(m.lifecycle, "loading");
    assert.throws(() => m.handle({ kind: "begin" }).actions, { code: "ERR_BGWORKER_POSTMASTER_STATE" });
    m.handle({ kind: "register-static", definition: definition("s") });
    const h = new Harness(m);
    h.run(m.handle({ kind: "start" }).actions);
    assert.equal(m.lifecycle, "starting");
    assert.throws(() => m.handle({ kind: "register-static", definition: definition("late") }).actions, { code: "ERR_BGWORKER_POSTMASTER_STATE" });
    m.handle({ kind: "ready" });
    assert.equal(m.lifecycle, "running");
    h.run(m.handle({ kind: "shutdown", mode: "fast" }).actions);
    assert.equal(m.lifecycle, "stopping");
    assert.throws(() => launch(m, definition("d")), { code: "ERR_BGWORKER_SHUTTING_DOWN" });
    const done = h.exit("s", 0);
    assert.equal(of(done, "shutdownComplete").length, 1);
    m.handle({ kind: "closed" });
    assert.equal(m.lifecycle, "stopped");
  });

  it("refuses SPI without a database, and a full table, with their codes", () => {
    const m = machine({ max: 1, database: false });
    assert.throws(() => launch(m, definition("spi", (b) => b.enableSpiAccess())), { name: "TypeError", code: "ERR_BGWORKER_NO_DATABASE" });
    launch(m, definition("one"));
    assert.throws(() => launch(m, definition("two")), { code: "ERR_BGWORKER_NO_FREE_SLOT" });
  });
});

describe("cluster-scoped workers under a lease (SPEC §10)", () => {
  const clusterWorker = (restartMs: number | null = 100) => definition("sched", (b) => b.setScope("cluster").setRestartTime(restartMs));
  const leaseEvents = (actions: readonly Action[]) => of(actions, "lease").map((a) => a.event);

  function started(): { m: PostmasterMachine; h: Harness } {
    const m = machine({ cluster: true });
    m.handle({ kind: "register-static", definition: clusterWorker() });
    m.handle({ kind: "register-static", definition: definition("local", (b) => b.setRestartTime(100)) });
    const h = new Harness(m);
    h.run(m.handle({ kind: "start" }).actions);
    return { m, h };
  }

  it("starts only once the lease is granted, with the generation as its fencing token; host-scoped workers start as before", () => {
    const { m, h } = started();
    assert.equal(h.row("sched").state, "waiting");
    assert.equal(h.row("local").state, "running");
    assert.equal(h.row("sched").fencingToken, null);
    const actions = h.run(m.handle({ kind: "lease-granted", worker: "sched", generation: 7n }).actions);
    assert.deepEqual(of(actions, "spawn").map((a) => [a.definition.name, a.fencingToken]), [["sched", 7n]]);
    assert.deepEqual(leaseEvents(actions), [{ kind: "worker-started", pid: h.pidOf("sched") }]);
    assert.equal(h.row("sched").fencingToken, "7");
    assert.equal(h.row("sched").scope, "cluster");
    assert.equal(h.row("local").scope, "host");
  });

  it("restarts by its rules under the same lease, and tells the lease each exit is not final", () => {
    const { m, h } = started();
    h.run(m.handle({ kind: "lease-granted", worker: "sched", generation: 3n }).actions);
    const pid = h.pidOf("sched")!;
    const exit = h.exit("sched", 1);
    assert.deepEqual(leaseEvents(exit), [{ kind: "worker-exited", pid, final: false }]);
    const restart = h.fire(exit);
    assert.deepEqual(of(restart, "spawn").map((a) => a.fencingToken), [3n]);
  });

  it("a lost lease stops the worker: no failure, no restart timer, and it waits for the next lease", () => {
    const { m, h } = started();
    h.run(m.handle({ kind: "lease-granted", worker: "sched", generation: 3n }).actions);
    const pid = h.pidOf("sched")!;
    assert.deepEqual(m.handle({ kind: "lease-stop", worker: "sched", signal: "SIGTERM" }).actions, [{ type: "signal", pid, signal: "SIGTERM" }]);
    assert.deepEqual(m.handle({ kind: "lease-stop", worker: "sched", signal: "SIGKILL" }).actions, [{ type: "signal", pid, signal: "SIGKILL" }]);
    const exit = h.exit("sched", null, "SIGKILL");
    assert.equal(of(exit, "setTimer").length, 0);
    assert.deepEqual(logLines(exit).filter((l) => l.includes("terminating any other")), [], "a worker its own postmaster killed is no crash");
    assert.deepEqual(leaseEvents(exit), [{ kind: "worker-exited", pid, final: false }]);
    assert.equal(h.row("sched").state, "waiting");
    assert.equal(h.row("sched").fencingToken, null);
    const again = h.run(m.handle({ kind: "lease-granted", worker: "sched", generation: 4n }).actions);
    assert.deepEqual(of(again, "spawn").map((a) => a.fencingToken), [4n]);
  });

  it("a lease lost while a restart is pending drops it, and the lease hears at once that there is no process", () => {
    const { m, h } = started();
    h.run(m.handle({ kind: "lease-granted", worker: "sched", generation: 3n }).actions);
    const exit = h.exit("sched", 1);
    assert.equal(h.row("sched").state, "backoff");
    const stop = m.handle({ kind: "lease-stop", worker: "sched", signal: "SIGTERM" }).actions;
    assert.deepEqual(stop, [
      { type: "clearTimer", key: { kind: "restart", slot: 0, generation: 1 } },
      { type: "lease", worker: "sched", event: { kind: "worker-exited", pid: 0, final: false } },
    ]);
    assert.equal(h.row("sched").state, "waiting");
    assert.equal(of(h.fire(exit), "spawn").length, 0, "the stale restart timer starts nothing");
  });

  it("a lease lost before the runner is handed the worker: it is signalled as soon as it has a process", () => {
    const m = machine({ cluster: true });
    m.handle({ kind: "register-static", definition: clusterWorker() });
    m.handle({ kind: "start" });
    const spawn = of(m.handle({ kind: "lease-granted", worker: "sched", generation: 1n }).actions, "spawn")[0]!;
    assert.deepEqual(m.handle({ kind: "lease-stop", worker: "sched", signal: "SIGTERM" }).actions, []);
    const handed = m.handle({ kind: "handed-over", slot: spawn.slot, generation: spawn.generation, pid: 500, at: 1 }).actions;
    assert.deepEqual(of(handed, "signal"), [{ type: "signal", pid: 500, signal: "SIGTERM" }]);
  });

  it("a worker done for good (exit 0) tells its lease the exit is final, and a later grant gives it straight back", () => {
    const { m, h } = started();
    h.run(m.handle({ kind: "lease-granted", worker: "sched", generation: 2n }).actions);
    const pid = h.pidOf("sched")!;
    assert.deepEqual(leaseEvents(h.exit("sched", 0)), [{ kind: "worker-exited", pid, final: true }]);
    assert.deepEqual(m.handle({ kind: "lease-granted", worker: "sched", generation: 3n }).actions, [
      { type: "lease", worker: "sched", event: { kind: "worker-exited", pid: 0, final: true } },
    ]);
  });

  it("a shutdown tells the lease of a worker waiting for its restart that it is gone for good", () => {
    const { m, h } = started();
    h.run(m.handle({ kind: "lease-granted", worker: "sched", generation: 2n }).actions);
    h.exit("sched", 1);
    const actions = m.handle({ kind: "shutdown", mode: "fast" }).actions;
    assert.deepEqual(leaseEvents(actions), [{ kind: "worker-exited", pid: 0, final: true }]);
  });

  it("without a cluster a cluster-scoped worker runs as a host-scoped one, with a WARNING at registration", () => {
    const m = machine();
    const registration = m.handle({ kind: "register-static", definition: clusterWorker() }).actions;
    assert.match(logLines(registration).join("\n"), /has scope "cluster", but this postmaster is not in a cluster/);
    const h = new Harness(m);
    const actions = h.run(m.handle({ kind: "start" }).actions);
    assert.deepEqual(of(actions, "spawn").map((a) => a.fencingToken), [null]);
    assert.equal(of(actions, "lease").length, 0);
    assert.equal(h.row("sched").fencingToken, undefined);
  });

  it("refuses a dynamic launch of a cluster-scoped worker with its code", () => {
    const m = machine({ cluster: true });
    m.handle({ kind: "start" });
    assert.throws(
      () => m.handle({ kind: "launch", definition: definition("dyn", (b) => b.setScope("cluster"), 4242) }),
      (error: Error & { code?: string }) => error.code === "ERR_BGWORKER_CLUSTER_SCOPE" && /scope "cluster" is for static workers/.test(error.message),
    );
  });
});

describe("shutdown modes", () => {
  it("reports the smart shutdown asked for, also once its dynamic workers are done and the others are being stopped", () => {
    const m = machine();
    m.handle({ kind: "register-static", definition: definition("static") });
    const h = new Harness(m);
    h.run(m.handle({ kind: "start" }).actions);
    h.run(launch(m, definition("dynamic")).actions);
    h.run(m.handle({ kind: "shutdown", mode: "smart" }).actions);
    assert.deepEqual(m.state, { stage: "stopping", mode: "smart", sent: null, recovering: false });
    const after = h.exit("dynamic", 0);
    assert.ok(logLines(after).includes("no dynamic background workers left; stopping the others"));
    assert.equal(m.shuttingDown, "smart", "the second step of a smart shutdown is still the smart shutdown");
    assert.equal(m.lifecycle, "stopping");
    assert.deepEqual(of(h.exit("static", 0), "shutdownComplete"), [{ type: "shutdownComplete", mode: "smart" }]);
    m.handle({ kind: "closed" });
    assert.deepEqual(m.state, { stage: "stopped", mode: "smart" });
  });

  it("upgrades smart to fast and fast to immediate, logging each; a milder request never downgrades", () => {
    const m = machine();
    m.handle({ kind: "register-static", definition: definition("static") });
    const h = new Harness(m);
    h.run(m.handle({ kind: "start" }).actions);
    h.run(launch(m, definition("dynamic")).actions);
    h.run(m.handle({ kind: "shutdown", mode: "smart" }).actions);
    const fast = h.run(m.handle({ kind: "shutdown", mode: "fast" }).actions);
    assert.equal(m.shuttingDown, "fast");
    assert.deepEqual(logLines(fast), ["received fast shutdown request"]);
    assert.deepEqual(of(fast, "signal").map((s) => s.signal), ["SIGTERM", "SIGTERM"]);
    assert.deepEqual(h.run(m.handle({ kind: "shutdown", mode: "smart" }).actions), [], "smart after fast: nothing");
    assert.deepEqual(h.run(m.handle({ kind: "shutdown", mode: "fast" }).actions), [], "fast again: nothing");
    assert.equal(m.shuttingDown, "fast");
    const immediate = h.run(m.handle({ kind: "shutdown", mode: "immediate" }).actions);
    assert.equal(m.shuttingDown, "immediate");
    assert.deepEqual(logLines(immediate), ["received immediate shutdown request"]);
    assert.deepEqual(of(immediate, "signal").map((s) => s.signal), ["SIGKILL", "SIGKILL"]);
    assert.deepEqual(h.run(m.handle({ kind: "shutdown", mode: "fast" }).actions), [], "fast after immediate: nothing");
    assert.equal(m.shuttingDown, "immediate");
  });

  it("a fast request after a smart shutdown has stopped the others changes the mode, not the signals or the kill timer", () => {
    const m = machine();
    m.handle({ kind: "register-static", definition: definition("static") });
    const h = new Harness(m);
    h.run(m.handle({ kind: "start" }).actions);
    h.run(m.handle({ kind: "shutdown", mode: "smart" }).actions);
    assert.deepEqual(m.state, { stage: "stopping", mode: "smart", sent: "SIGTERM", recovering: false }, "no dynamic worker: the others are stopped at once");
    const fast = h.run(m.handle({ kind: "shutdown", mode: "fast" }).actions);
    assert.deepEqual(fast, [{ type: "log", event: { event: "shutdown-requested", mode: "fast" } }]);
    assert.equal(m.shuttingDown, "fast");
  });

  it("a process handed over during a shutdown gets what every worker was sent", () => {
    const m = machine();
    m.handle({ kind: "register-static", definition: definition("w") });
    const [spawn] = of(m.handle({ kind: "start" }).actions, "spawn");
    assert.ok(spawn);
    m.handle({ kind: "shutdown", mode: "smart" });
    const handedOver = (pid: number) => m.handle({ kind: "handed-over", slot: spawn.slot, generation: spawn.generation, pid, at: 0 }).actions;
    assert.deepEqual(of(handedOver(100), "signal"), [{ type: "signal", pid: 100, signal: "SIGTERM" }]);
  });
});

describe("events as data", () => {
  const w = definition("w", (b) => b.setRestartTime(100));
  const worker = (pid?: number) => (pid === undefined ? { name: "w", type: "w" } : { name: "w", type: "w", pid });
  /** A recorded run: a worker that fails once, is restarted, and is stopped by a fast shutdown. */
  const recorded: readonly MachineEvent[] = [
    { kind: "begin" },
    { kind: "register-static", definition: w },
    { kind: "phase", phase: "running" },
    { kind: "start" },
    { kind: "handed-over", slot: 0, generation: 1, pid: 100, at: 1_000 },
    { kind: "ready" },
    { kind: "entered", pid: 100, at: 1_200 },
    { kind: "exited", pid: 100, code: 1, signal: null, at: 5_000 },
    { kind: "timer", key: { kind: "restart", slot: 0, generation: 1 } },
    { kind: "handed-over", slot: 0, generation: 1, pid: 101, at: 5_150 },
    { kind: "shutdown", mode: "fast" },
    { kind: "exited", pid: 101, code: null, signal: "SIGTERM", at: 5_300 },
    { kind: "closed" },
  ];
  const expected: readonly (readonly Action[])[] = [
    [],
    [],
    [],
    [
      { type: "log", event: { event: "worker-registering", name: "w" } },
      { type: "spawn", slot: 0, generation: 1, definition: w, restart: false, staticStart: true, fencingToken: null },
    ],
    [{ type: "log", event: { event: "worker-started", name: "w", pid: 100 }, worker: worker(100) }],
    [],
    [],
    [
      { type: "log", event: { event: "worker-exited", type: "w", pid: 100, code: 1, signal: null }, worker: worker(100) },
      { type: "setTimer", key: { kind: "restart", slot: 0, generation: 1 }, delayMs: 100 },
    ],
    [{ type: "spawn", slot: 0, generation: 1, definition: w, restart: true, staticStart: false, fencingToken: null }],
    [{ type: "log", event: { event: "worker-started", name: "w", pid: 101 }, worker: worker(101) }],
    [
      { type: "log", event: { event: "shutdown-requested", mode: "fast" } },
      { type: "signal", pid: 101, signal: "SIGTERM" },
      { type: "setTimer", key: { kind: "shutdown-kill" }, delayMs: 10_000 },
    ],
    [
      { type: "log", event: { event: "worker-exited", type: "w", pid: 101, code: null, signal: "SIGTERM" }, worker: worker(101) },
      { type: "clearTimer", key: { kind: "shutdown-kill" } },
      { type: "shutdownComplete", mode: "fast" },
    ],
    [],
  ];

  it("replays a recorded list of events into the same actions, event by event", () => {
    const m = machine();
    assert.deepEqual(recorded.map((event) => m.handle(event).actions), expected);
    assert.deepEqual(m.state, { stage: "stopped", mode: "fast" });
    assert.deepEqual(
      m.rows().map((r) => [r.name, r.state, r.restarts, r.lastExit]),
      [["w", "stopped", 1, { code: null, signal: "SIGTERM", at: new Date(5_300).toISOString() }]],
    );
  });

  it("gives the same actions when the events recorded from a run are replayed into a new machine", () => {
    // Record what a harness feeds while it runs a scenario, then replay the record.
    const events: MachineEvent[] = [];
    const actions: Action[][] = [];
    const live = machine();
    const handle = live.handle.bind(live);
    live.handle = ((event: MachineEvent) => {
      const outcome = handle(event);
      events.push(event);
      actions.push(outcome.actions);
      return outcome;
    }) as typeof live.handle;
    live.handle({ kind: "register-static", definition: definition("crasher", (b) => b.enableShmemAccess().setRestartTime(0)) });
    live.handle({ kind: "register-static", definition: definition("peer", (b) => b.enableShmemAccess().setRestartTime(0)) });
    const h = new Harness(live);
    h.run(live.handle({ kind: "start" }).actions);
    h.run(launch(live, definition("d", (b) => b, 4242)).actions);
    h.now += 5_000;
    h.exit("crasher", null, "SIGSEGV");
    h.run(live.handle({ kind: "exited", pid: h.pidOf("peer")!, code: null, signal: "SIGKILL", at: h.now }).actions);
    h.run(live.handle({ kind: "shmem-reset" }).actions);
    h.run(live.handle({ kind: "shutdown", mode: "smart" }).actions);
    assert.ok(events.length > 10);
    const replay = machine();
    assert.deepEqual(events.map((event) => replay.handle(event).actions), actions);
    assert.deepEqual(replay.rows(), live.rows());
    assert.deepEqual(replay.state, live.state);
  });

  it("answers each request event with its result", () => {
    const m = machine();
    m.handle({ kind: "start" });
    const launched = m.handle({ kind: "launch", definition: definition("d") });
    assert.deepEqual(launched.result, { postmaster: "pm", slot: 0, generation: 1 });
    assert.equal(m.handle({ kind: "restart", target: { type: "nobody" } }).result, 0);
    assert.equal(m.handle({ kind: "terminate", target: { pid: 999 } }).result, false);
    assert.equal(m.handle({ kind: "terminate", target: { handle: launched.result } }).result, true);
    assert.equal(m.handle({ kind: "reload" }).result, undefined);
  });
});
