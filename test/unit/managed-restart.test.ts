/**
 * The managed server's restart decision (SPEC §6), without a server, processes or real time: sequences of
 * exits and failed starts at given times, and the delays and log lines they must give. The rule is the
 * workers' restart-storm damping with a restart time of 0, so the same sequences are also fed to the
 * postmaster's state machine for a worker with restart time 0, and the delays must agree.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BackgroundWorkerBuilder, definitionOf } from "../../src/builder.js";
import { ServerRestarts } from "../../src/database/managed.js";
import { PostmasterMachine, type Action } from "../../src/postmaster/machine.js";
import { DEFAULT_RESTART_BACKOFF, type RestartBackoff } from "../../src/postmaster/rules.js";

const T0 = 1_700_000_000_000;
const PORT = 54321;
const EXITED = /^the managed PostgreSQL server exited without being asked to, after running (\d+) ms: starting it again$/;
const DAMPED = /^starting the PostgreSQL server again \(attempt (\d+), after (\d+) ms of restart-storm damping\)$/;

/** Drives a ServerRestarts as managed.ts does, with a clock of its own; collects what would be logged. */
class Supervision {
  now = T0;
  readonly lines: string[] = [];
  readonly delays: number[] = [];
  readonly restarts: ServerRestarts;

  constructor(backoff: RestartBackoff = DEFAULT_RESTART_BACKOFF) {
    this.restarts = new ServerRestarts(backoff, this.now);
  }

  /**
   * The server runs `runMs`, is found gone, then `failedStarts` attempts fail (each taking `attemptMs`) before
   * one succeeds. Returns the delays waited before each attempt.
   */
  crash(runMs: number, failedStarts = 0, attemptMs = 30): number[] {
    this.now += runMs;
    const exit = this.restarts.exited(this.now);
    this.lines.push(exit.line);
    let next = exit.next;
    const waited: number[] = [];
    for (let failed = 0; ; failed++) {
      waited.push(next.delayMs);
      this.now += next.delayMs;
      this.lines.push(next.line);
      this.now += attemptMs;
      if (failed === failedStarts) {
        this.lines.push(this.restarts.started(this.now, PORT));
        break;
      }
      const failure = this.restarts.startFailed(this.now, `lock file "postmaster.pid" already exists`);
      this.lines.push(failure.line);
      next = failure.next;
    }
    this.delays.push(...waited);
    return waited;
  }
}

describe("managed server restarts (SPEC §6 damping)", () => {
  it("starts a server that ran long at once, with the lines docs/database.md shows", () => {
    const s = new Supervision();
    assert.deepEqual(s.crash(60_000), [0]);
    assert.deepEqual(s.lines, [
      "the managed PostgreSQL server exited without being asked to, after running 60000 ms: starting it again",
      "starting the PostgreSQL server again (attempt 1)",
      `database system is ready again: PostgreSQL on 127.0.0.1 port ${PORT} (attempt 1)`,
    ]);
    assert.equal(s.restarts.fastFailures, 0);
  });

  it("honours the ordinary rule for four fast failures, damps from the fifth, doubling per further one", () => {
    const s = new Supervision();
    for (let i = 0; i < 8; i++) s.crash(200);
    assert.deepEqual(s.delays, [0, 0, 0, 0, 100, 200, 400, 800]);
    assert.equal(s.restarts.fastFailures, 8);
    const damped = s.lines.filter((l) => l.includes("restart-storm damping"));
    assert.deepEqual(damped, [
      "starting the PostgreSQL server again (attempt 1, after 100 ms of restart-storm damping)",
      "starting the PostgreSQL server again (attempt 1, after 200 ms of restart-storm damping)",
      "starting the PostgreSQL server again (attempt 1, after 400 ms of restart-storm damping)",
      "starting the PostgreSQL server again (attempt 1, after 800 ms of restart-storm damping)",
    ]);
    // Each run is measured from the moment the server was ready again, not from the exit before it.
    assert.deepEqual(
      s.lines.filter((l) => EXITED.test(l)).map((l) => Number(EXITED.exec(l)![1])),
      [200, 200, 200, 200, 200, 200, 200, 200],
    );
  });

  it("counts every failed start as a fast failure, numbering the attempts of one exit", () => {
    const s = new Supervision();
    // A SIGKILLed server's processes hold its lock file for a while: six starts fail, the seventh works.
    assert.deepEqual(s.crash(225, 6), [0, 0, 0, 0, 100, 200, 400]);
    assert.deepEqual(s.lines, [
      "the managed PostgreSQL server exited without being asked to, after running 225 ms: starting it again",
      "starting the PostgreSQL server again (attempt 1)",
      'could not start the PostgreSQL server again (attempt 1): lock file "postmaster.pid" already exists',
      "starting the PostgreSQL server again (attempt 2)",
      'could not start the PostgreSQL server again (attempt 2): lock file "postmaster.pid" already exists',
      "starting the PostgreSQL server again (attempt 3)",
      'could not start the PostgreSQL server again (attempt 3): lock file "postmaster.pid" already exists',
      "starting the PostgreSQL server again (attempt 4)",
      'could not start the PostgreSQL server again (attempt 4): lock file "postmaster.pid" already exists',
      "starting the PostgreSQL server again (attempt 5, after 100 ms of restart-storm damping)",
      'could not start the PostgreSQL server again (attempt 5): lock file "postmaster.pid" already exists',
      "starting the PostgreSQL server again (attempt 6, after 200 ms of restart-storm damping)",
      'could not start the PostgreSQL server again (attempt 6): lock file "postmaster.pid" already exists',
      "starting the PostgreSQL server again (attempt 7, after 400 ms of restart-storm damping)",
      `database system is ready again: PostgreSQL on 127.0.0.1 port ${PORT} (attempt 7)`,
    ]);
    // The count goes on past a successful start: the next quick exit is the eighth fast failure.
    assert.deepEqual(s.crash(300), [800]);
    // A new exit numbers its attempts from 1 again.
    assert.match(s.lines.at(-2)!, /\(attempt 1, after 800 ms of restart-storm damping\)$/);
  });

  it("a failed start is a fast failure however long it took", () => {
    const s = new Supervision();
    for (let i = 0; i < 4; i++) s.crash(100);
    // pg_ctl start -w may take long to fail; the attempt after it is still damped.
    assert.deepEqual(s.crash(100, 1, 50_000), [100, 200]);
  });

  it("caps the delay at 30 s", () => {
    const s = new Supervision();
    for (let i = 0; i < 20; i++) s.crash(10);
    assert.deepEqual(s.delays.slice(4, 14), [100, 200, 400, 800, 1_600, 3_200, 6_400, 12_800, 25_600, 30_000]);
    assert.deepEqual(s.delays.slice(14), [30_000, 30_000, 30_000, 30_000, 30_000, 30_000]);
    assert.ok(s.lines.includes("starting the PostgreSQL server again (attempt 1, after 30000 ms of restart-storm damping)"));
  });

  it("keeps the count over a run between 1 s and 10 s, and clears it after a run of 10 s", () => {
    const s = new Supervision();
    for (let i = 0; i < 6; i++) s.crash(200);
    assert.equal(s.restarts.fastFailures, 6);
    // 5 s: neither a fast failure nor long enough to clear; the delay stays where it was.
    assert.deepEqual(s.crash(5_000), [200]);
    assert.equal(s.restarts.fastFailures, 6);
    // Exactly 1 s is not a fast failure either.
    assert.deepEqual(s.crash(1_000), [200]);
    // 10 s clears it: the ordinary rule again, and four more fast failures before damping.
    assert.deepEqual(s.crash(10_000), [0]);
    assert.equal(s.restarts.fastFailures, 0);
    for (let i = 0; i < 5; i++) s.crash(999);
    assert.deepEqual(s.delays.slice(-5), [0, 0, 0, 0, 100]);
  });

  it("a server found running again after a damped wait runs from then on", () => {
    const s = new Supervision();
    for (let i = 0; i < 5; i++) s.crash(200);
    // The sixth exit: damped, and meanwhile someone else starts the server (managed.ts sees its pid).
    s.now += 200;
    const exit = s.restarts.exited(s.now);
    assert.equal(exit.next.delayMs, 200);
    s.now += exit.next.delayMs;
    s.restarts.started(s.now, PORT);
    // It then runs 12 s: the count is cleared.
    s.now += 12_000;
    assert.equal(s.restarts.exited(s.now).next.delayMs, 0);
    assert.equal(s.restarts.fastFailures, 0);
  });

  it("follows the restartBackoff option", () => {
    const backoff: RestartBackoff = { failures: 2, fastFailureMs: 500, initialDelayMs: 250, maxDelayMs: 1_000, resetAfterMs: 2_000 };
    const s = new Supervision(backoff);
    for (const run of [100, 100, 499, 100, 100, 700, 2_000, 100]) s.crash(run);
    assert.deepEqual(s.delays, [0, 250, 500, 1_000, 1_000, 1_000, 0, 0]);
    const damped = s.lines.map((l) => DAMPED.exec(l)).filter((m) => m !== null);
    assert.deepEqual(damped.map((m) => Number(m[2])), [250, 500, 1_000, 1_000, 1_000]);
  });

  it("gives the delays a worker with restart time 0 gets from the postmaster for the same runs", () => {
    const runs = [50, 120, 900, 80, 10, 300, 5_000, 40, 40, 12_000, 10, 10, 10, 10, 10, 10, 2_000, 10];
    const server = new Supervision();
    for (const run of runs) server.crash(run, 0, 0);
    assert.deepEqual(workerDelays(runs), server.delays);
    assert.deepEqual(server.delays, [0, 0, 0, 0, 100, 200, 200, 400, 800, 0, 0, 0, 0, 0, 100, 200, 200, 400]);
  });
});

/** The restart delays the state machine sets for a worker with restart time 0 that exits 1 after each run. */
function workerDelays(runs: readonly number[]): number[] {
  const m = new PostmasterMachine({ postmasterId: "pm", maxWorkerProcesses: 2, databaseServed: false, shutdownTimeoutMs: 1_000 });
  m.handle({ kind: "register-static", definition: definitionOf(new BackgroundWorkerBuilder("w").setLibrary("./l.ts").setFunction("f").setRestartTime(0)) });
  let now = T0;
  let pid = 100;
  const spawnIn = (actions: readonly Action[]): number => {
    const spawn = actions.find((a): a is Extract<Action, { type: "spawn" }> => a.type === "spawn");
    assert.ok(spawn, "expected a spawn");
    m.handle({ kind: "handed-over", slot: spawn.slot, generation: spawn.generation, pid: ++pid, at: now });
    m.handle({ kind: "entered", pid, at: now });
    return pid;
  };
  let running = spawnIn(m.handle({ kind: "start" }).actions);
  const delays: number[] = [];
  for (const run of runs) {
    now += run;
    const actions = m.handle({ kind: "exited", pid: running, code: 1, signal: null, at: now }).actions;
    const timers = actions.filter((a): a is Extract<Action, { type: "setTimer" }> => a.type === "setTimer");
    if (timers.length === 0) {
      // No delay: the restart is in the exit's own actions.
      delays.push(0);
      running = spawnIn(actions);
      continue;
    }
    assert.equal(timers.length, 1);
    delays.push(timers[0]!.delayMs);
    now += timers[0]!.delayMs;
    running = spawnIn(m.handle({ kind: "timer", key: timers[0]!.key }).actions);
  }
  return delays;
}
