/** `bgworker restart`: the state machine's rule (a new process now, whatever the restart time, counted) and the request. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BackgroundWorkerBuilder, definitionOf } from "../../src/builder.js";
import { parseRequest } from "../../src/control/protocol.js";
import { PostmasterMachine, type Action } from "../../src/postmaster/machine.js";
import { restart, terminatePid } from "../helpers/machine.js";

const T0 = 5_000_000;

/** A machine whose spawns become running processes with pids 200, 201, ... */
function setup(workers: [name: string, type: string, restartTimeMs: number | null][]) {
  const m = new PostmasterMachine({ postmasterId: "pm", maxWorkerProcesses: 8, databaseServed: false, shutdownTimeoutMs: 10_000 });
  for (const [name, type, restartTimeMs] of workers) {
    m.handle({ kind: "register-static", definition: definitionOf(new BackgroundWorkerBuilder(name).setType(type).setLibrary("./l.ts").setFunction("f").setRestartTime(restartTimeMs)) });
  }
  let pid = 200;
  const carry = (actions: Action[]): Action[] => {
    const out = [...actions];
    for (const action of actions) {
      if (action.type !== "spawn") continue;
      const child = pid++;
      out.push(...carry(m.handle({ kind: "handed-over", slot: action.slot, generation: action.generation, pid: child, at: T0 }).actions), ...carry(m.handle({ kind: "entered", pid: child, at: T0 }).actions));
    }
    return out;
  };
  carry(m.handle({ kind: "phase", phase: "running" }).actions);
  carry(m.handle({ kind: "start" }).actions);
  const row = (name: string) => m.rows().find((r) => r.name === name)!;
  return { m, carry, row };
}

const signals = (actions: Action[]) => actions.filter((a) => a.type === "signal").map((a) => (a.type === "signal" ? [a.pid, a.signal] : []));
const spawns = (actions: Action[]) => actions.filter((a) => a.type === "spawn").length;

describe("restart", () => {
  it("stops a running worker and starts it again at once on exit, even one that never restarts, counting it", () => {
    const { m, carry, row } = setup([["once", "once", null]]);
    const pid = row("once").pid!;
    const { matched, actions } = restart(m, { pid });
    assert.equal(matched, 1);
    assert.deepEqual(signals(carry(actions)), [[pid, "SIGTERM"]]);
    // Exit code 0 or 1 after the SIGTERM: either way a new process now, with no restart timer.
    const after = carry(m.handle({ kind: "exited", pid, code: 0, signal: null, at: T0 + 50 }).actions);
    assert.equal(spawns(after), 1);
    assert.equal(after.filter((a) => a.type === "setTimer").length, 0);
    assert.equal(row("once").state, "running");
    assert.notEqual(row("once").pid, pid);
    assert.equal(row("once").restarts, 1);
    assert.equal(row("once").lastExit?.code, 0);
  });

  it("starts a worker in backoff now instead of after its restart time", () => {
    const { m, carry, row } = setup([["slow", "slow", 60_000]]);
    carry(m.handle({ kind: "exited", pid: row("slow").pid!, code: 1, signal: null, at: T0 + 10 }).actions);
    assert.equal(row("slow").state, "backoff");
    const actions = carry(restart(m, { type: "slow" }).actions);
    assert.ok(actions.some((a) => a.type === "clearTimer"));
    assert.equal(spawns(actions), 1);
    assert.equal(row("slow").state, "running");
    assert.equal(row("slow").restarts, 1);
  });

  it("matches every registered worker of a type, or one handle; none is an answer of 0", () => {
    const { m, carry, row } = setup([["a", "pool", 1000], ["b", "pool", 1000], ["c", "other", 1000]]);
    const { matched, actions } = restart(m, { type: "pool" });
    assert.equal(matched, 2);
    assert.deepEqual(signals(carry(actions)).map(([pid]) => pid).sort(), [row("a").pid, row("b").pid].sort());
    // Asked twice before the exit: still one restart.
    assert.equal(signals(restart(m, { type: "pool" }).actions).length, 0);
    assert.equal(restart(m, { type: "nobody" }).matched, 0);
    assert.equal(restart(m, { pid: 99_999 }).matched, 0);
    assert.equal(restart(m, { handle: { postmaster: "pm", slot: 2, generation: 0 } }).matched, 0, "a static worker has no live handle of another generation");
  });

  it("leaves a terminated worker stopped, and refuses while shutting down", () => {
    const { m, carry, row } = setup([["w", "w", 1000]]);
    const pid = row("w").pid!;
    carry(terminatePid(m, pid).actions);
    assert.equal(signals(restart(m, { pid }).actions).length, 0);
    carry(m.handle({ kind: "exited", pid, code: 1, signal: null, at: T0 + 5 }).actions);
    assert.equal(row("w").state, "stopped");
    carry(m.handle({ kind: "shutdown", mode: "smart" }).actions);
    assert.throws(() => restart(m, { type: "w" }), { code: "ERR_BGWORKER_POSTMASTER_STATE" });
  });

  it("a crash of a shared-memory worker being restarted still follows the crash rule", () => {
    const m = new PostmasterMachine({ postmasterId: "pm", maxWorkerProcesses: 8, databaseServed: false, shutdownTimeoutMs: 10_000 });
    m.handle({ kind: "register-static", definition: definitionOf(new BackgroundWorkerBuilder("s").setLibrary("./l.ts").setFunction("f").setRestartTime(1000).enableShmemAccess()) });
    m.handle({ kind: "phase", phase: "running" });
    const [spawn] = m.handle({ kind: "start" }).actions.filter((a) => a.type === "spawn");
    assert.ok(spawn?.type === "spawn");
    m.handle({ kind: "handed-over", slot: spawn.slot, generation: spawn.generation, pid: 300, at: T0 });
    restart(m, { pid: 300 });
    const actions = m.handle({ kind: "exited", pid: 300, code: null, signal: "SIGSEGV", at: T0 + 5 }).actions;
    assert.ok(actions.some((a) => a.type === "resetShmem"), "shared memory is re-created before it starts again");
  });
});

describe("restart request", () => {
  it("names exactly one of pid, handle or type", () => {
    const parse = (target: unknown) => parseRequest(JSON.stringify({ id: 1, op: "restart", target }));
    assert.deepEqual(parse({ pid: 42 }), { ok: true, value: { id: 1, op: "restart", target: { pid: 42 } } });
    assert.deepEqual(parse({ type: "ingest" }), { ok: true, value: { id: 1, op: "restart", target: { type: "ingest" } } });
    const byHandle = parse({ handle: "bgw1:pm:2:3" });
    assert.ok(byHandle.ok && byHandle.value.op === "restart");
    assert.deepEqual(byHandle.value.target, { handle: { postmaster: "pm", slot: 2, generation: 3 } });
    for (const bad of [42, "x", {}, { pid: 0 }, { type: "" }, { pid: 1, type: "x" }, { name: "x" }, { handle: 7 }]) {
      const parsed = parse(bad);
      assert.ok(!parsed.ok, JSON.stringify(bad));
      assert.match(parsed.error.message, /^restart: /);
    }
  });
});
