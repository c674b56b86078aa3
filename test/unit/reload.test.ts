/** Reload (SIGHUP, `bgworker reload`): the machine's decision and the control protocol's op; handles read strictly. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BackgroundWorkerBuilder, definitionOf } from "../../src/builder.js";
import { BgWorkerStartTime } from "../../src/definition.js";
import { parseRequest } from "../../src/control/protocol.js";
import { PostmasterMachine, type Action } from "../../src/postmaster/machine.js";

function machine(): PostmasterMachine {
  return new PostmasterMachine({ postmasterId: "pm", maxWorkerProcesses: 8, databaseServed: true, shutdownTimeoutMs: 10_000 });
}

const worker = (name: string, startTime = BgWorkerStartTime.PostmasterStart) =>
  definitionOf(new BackgroundWorkerBuilder(name).setLibrary("./lib.ts").setFunction("main").setStartTime(startTime));

describe("PostmasterMachine#reload", () => {
  it("logs PostgreSQL's line and sends SIGHUP to every running worker, and to nothing else", () => {
    const m = machine();
    m.handle({ kind: "begin" });
    m.handle({ kind: "register-static", definition: worker("a") });
    m.handle({ kind: "register-static", definition: worker("b") });
    m.handle({ kind: "register-static", definition: worker("waiting", BgWorkerStartTime.RecoveryFinished) });
    m.handle({ kind: "register-static", definition: worker("booting") });
    let pid = 100;
    for (const action of m.handle({ kind: "start" }).actions) {
      if (action.type === "spawn") {
        const forked = pid++;
        m.handle({ kind: "handed-over", slot: action.slot, generation: action.generation, pid: forked, at: 0 });
        // The last one is forked but has not entered its function: it may have no SIGHUP handler yet.
        if (action.definition.name !== "booting") m.handle({ kind: "entered", pid: forked, at: 0 });
      }
    }
    const actions = m.handle({ kind: "reload" }).actions;
    assert.deepEqual(actions, [
      { type: "log", event: { event: "reload-requested" } },
      { type: "signal", pid: 100, signal: "SIGHUP" },
      { type: "signal", pid: 101, signal: "SIGHUP" },
    ] satisfies Action[]);
    assert.deepEqual(
      m.rows().map((r) => [r.name, r.state, r.restarts]),
      [["a", "running", 0], ["b", "running", 0], ["waiting", "waiting", 0], ["booting", "starting", 0]],
      "nothing stops or restarts",
    );
  });

  it("does nothing before start and after the postmaster stopped", () => {
    assert.deepEqual(machine().handle({ kind: "reload" }).actions, []);
  });
});

describe("the reload op", () => {
  it("takes no fields", () => {
    assert.deepEqual(parseRequest('{"id":1,"op":"reload"}'), { ok: true, value: { id: 1, op: "reload" } });
    const extra = parseRequest('{"id":2,"op":"reload","mode":"fast"}');
    assert.equal(extra.ok, false);
    assert.equal(!extra.ok && extra.error.message, 'reload: unknown field "mode"');
  });
});

describe("handles from the outside", () => {
  it("are read only in their canonical spelling, so no other spelling names a live worker", async () => {
    const { parseHandle } = await import("../../src/handle-format.js");
    assert.deepEqual(parseHandle("bgw1:pm.x:1:2"), { postmaster: "pm.x", slot: 1, generation: 2 });
    for (const spelling of ["bgw1:pm.x:0x1:2", "bgw1:pm.x:1e0:2", "bgw1:pm.x: 1:2", "bgw1:pm.x::2", "bgw1:pm.x:1:", "bgw1:pm.x:01:2", "bgw1:pm.x:1:+2"]) {
      assert.throws(() => parseHandle(spelling), { code: "ERR_BGWORKER_INVALID_HANDLE" }, spelling);
    }
  });
});
