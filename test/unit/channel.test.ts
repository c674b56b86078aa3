/**
 * The request channel (control/channel.ts) without a transport: numbering, the pending map, what each kind of
 * request gets when the postmaster is lost, and errors rebuilt with the stack of the caller's line.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RequestChannel, type NumberedRequest } from "../../src/control/channel.js";
import { BackgroundWorkerStatus, BackgroundWorkerStatusError, errorToWire, makeError, NoFreeWorkerSlotError } from "../../src/errors.js";

function channel(): { channel: RequestChannel; sent: NumberedRequest[]; pending: number[] } {
  const sent: NumberedRequest[] = [];
  const pending: number[] = [];
  const made = new RequestChannel((request) => sent.push(request), (count) => pending.push(count));
  return { channel: made, sent, pending };
}

const GONE = { postmasterGone: true, message: "the postmaster on /tmp/x.sock closed the connection" };

describe("RequestChannel", () => {
  it("numbers requests, settles each by its id in any order, and reports the pending count", async () => {
    const { channel: c, sent, pending } = channel();
    const first = c.request({ op: "status" }, "reject");
    const second = c.request({ op: "stop", mode: "fast" }, "reject");
    assert.deepEqual(sent.map((r) => r.id), [1, 2]);
    assert.equal(c.settle(2, { ok: true, result: "two" }), true);
    assert.equal(c.settle(1, { ok: true, result: "one" }), true);
    assert.equal(c.settle(1, { ok: true, result: "late" }), false, "a reply to no pending request is not taken");
    assert.deepEqual([await first, await second], ["one", "two"]);
    assert.deepEqual(pending, [1, 2, 1, 0]);
  });

  it("rebuilds a failed request's error with its class and code, and the stack of the line that asked", async () => {
    const { channel: c } = channel();
    async function askingLine(): Promise<unknown> {
      return c.request({ op: "launch", definition: {} as never }, "reject");
    }
    const asked = askingLine();
    c.settle(1, { ok: false, error: errorToWire(new NoFreeWorkerSlotError("all 2 worker slots are in use")) });
    await assert.rejects(asked, (error: unknown) => {
      assert.ok(error instanceof NoFreeWorkerSlotError);
      assert.equal(error.code, "ERR_BGWORKER_NO_FREE_SLOT");
      assert.match(error.stack ?? "", /^NoFreeWorkerSlotError: all 2 worker slots are in use\n/);
      assert.match(error.stack ?? "", /askingLine/, "the caller's frame is in the stack");
      assert.doesNotMatch(error.stack ?? "", /settle/, "the reply handler is not");
      return true;
    });
    const coded = c.request({ op: "status" }, "reject");
    c.settle(2, { ok: false, error: errorToWire(makeError(TypeError, "ERR_BGWORKER_NOTIFY_PID", "notify pid 1 ...")) });
    await assert.rejects(coded, { name: "TypeError", code: "ERR_BGWORKER_NOTIFY_PID" });
  });

  it("when the postmaster is lost: handle queries learn PostmasterDied, terminate rejects with it, the rest reject", async () => {
    const { channel: c } = channel();
    const state = c.request({ op: "state", handle: "bgw1:pm:0:1" }, "postmaster-died");
    const terminate = c.request({ op: "terminate", target: "bgw1:pm:0:1" }, "status-error");
    const launch = c.request({ op: "status" }, "reject");
    c.lose(GONE);
    assert.deepEqual(await state, { status: BackgroundWorkerStatus.PostmasterDied });
    await assert.rejects(terminate, (error: unknown) => error instanceof BackgroundWorkerStatusError && error.status === BackgroundWorkerStatus.PostmasterDied);
    await assert.rejects(launch, { code: "ERR_BGWORKER_CONNECTION_LOST", message: GONE.message });
    // Later requests get the same outcome at once, without being sent.
    assert.deepEqual(await c.request({ op: "waitForStartup", handle: "bgw1:pm:0:1" }, "postmaster-died"), { status: BackgroundWorkerStatus.PostmasterDied });
  });

  it("closed by this side: even handle queries reject, since the postmaster may well be alive", async () => {
    const { channel: c, sent } = channel();
    c.lose({ postmasterGone: false, message: "closed by this client" });
    await assert.rejects(c.request({ op: "state", handle: "bgw1:pm:0:1" }, "postmaster-died"), /closed by this client/);
    assert.equal(sent.length, 0);
  });

  it("a transport that cannot send rejects that request only", async () => {
    const c = new RequestChannel(() => {
      throw new RangeError("too large");
    });
    await assert.rejects(c.request({ op: "status" }, "reject"), RangeError);
  });
});
