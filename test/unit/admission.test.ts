/**
 * The admission check for dynamic launches (admission.ts), rule by rule, on every path a launch can take:
 * the launcher of any process, the postmaster's dispatch (shared by the control socket, the workers' IPC
 * channel and the postmaster's own process), a raw control-socket frame that skips the launcher, a worker's
 * IPC request, and a real in-process `Postmaster`.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { admitLaunch } from "../../src/admission.js";
import { BackgroundWorkerBuilder, definitionOf } from "../../src/builder.js";
import type { OutgoingRequest, Requester } from "../../src/control/channel.js";
import { answerRequest, dispatchRequest } from "../../src/control/dispatch.js";
import type { ControlHandler } from "../../src/control/handler.js";
import { ControlServer } from "../../src/control/server.js";
import type { WorkerDefinition } from "../../src/definition.js";
import { BackgroundWorkerStatus } from "../../src/errors.js";
import type { HandleRef } from "../../src/handle-format.js";
import { Launcher } from "../../src/launcher.js";
import { Logger } from "../../src/log.js";
import { Postmaster } from "../../src/postmaster/postmaster.js";

const FOREIGN_PID = 1;
const builder = (): BackgroundWorkerBuilder => new BackgroundWorkerBuilder("w").setLibrary("/lib/worker.ts").setFunction("main");
const foreign = (): WorkerDefinition => definitionOf(builder().setNotifyPid(FOREIGN_PID));
const own = (pid: number): WorkerDefinition => definitionOf(builder().setNotifyPid(pid));

function hasCode(code: string): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.ok(error instanceof TypeError, `expected a TypeError, got ${String(error)}`);
    assert.equal((error as { code?: string }).code, code);
    assert.ok(!error.message.includes("\n"), "one line");
    return true;
  };
}

/** The postmaster's decisions reduced to counting launches: a refused launch must never reach it. */
class CountingHandler implements ControlHandler {
  readonly postmasterId = "pm-admission";
  launches = 0;
  status(): never {
    throw new Error("unused");
  }
  launch(): HandleRef {
    this.launches += 1;
    return { postmaster: this.postmasterId, slot: 0, generation: this.launches };
  }
  state() {
    return { status: BackgroundWorkerStatus.NotYetStarted };
  }
  async waitForStartup() {
    return { status: BackgroundWorkerStatus.Untracked };
  }
  async waitForShutdown() {
    return { status: BackgroundWorkerStatus.Untracked };
  }
  terminate(): void {}
  restart(): number {
    return 0;
  }
  stop(): void {}
  clientGone(): void {}
  async reload(): Promise<void> {}
}

/** A requester that records what reaches it. */
class Recording implements Requester {
  readonly sent: OutgoingRequest[] = [];
  async request(request: OutgoingRequest): Promise<unknown> {
    this.sent.push(request);
    return { handle: "bgw1:pm:0:1", notifyPid: process.pid };
  }
}

describe("admission: the rules", () => {
  it("notify pid: 0 or the caller; anything else is refused naming value, worker and rule", () => {
    assert.doesNotThrow(() => admitLaunch({ definition: own(0), callerPid: 4242 }));
    assert.doesNotThrow(() => admitLaunch({ definition: own(4242), callerPid: 4242 }));
    assert.throws(() => admitLaunch({ definition: foreign(), callerPid: 4242 }), (error: unknown) => {
      hasCode("ERR_BGWORKER_NOTIFY_PID")(error);
      assert.match((error as Error).message, /^loadDynamic: notify pid 1 of background worker "w" must be 0 or the launching process's pid 4242/);
      return true;
    });
  });

  it("a shared memory startup hook is refused with one message", () => {
    assert.throws(() => admitLaunch({ definition: own(0), callerPid: 1, startup: () => undefined }), (error: unknown) => {
      hasCode("ERR_BGWORKER_STARTUP_HOOK")(error);
      assert.match((error as Error).message, /shared memory startup hook.*register it with load\(\) in an extension's _PG_init/);
      return true;
    });
  });
});

describe("admission: every path applies it", () => {
  it("the launcher (postmaster, worker and client alike) refuses before anything is sent", async () => {
    const requests = new Recording();
    const launcher = new Launcher(requests);
    await assert.rejects(launcher.launch(foreign()), hasCode("ERR_BGWORKER_NOTIFY_PID"));
    await assert.rejects(launcher.launch(own(process.pid), () => undefined), hasCode("ERR_BGWORKER_STARTUP_HOOK"));
    assert.equal(requests.sent.length, 0);
    await launcher.launch(own(process.pid));
    assert.equal(requests.sent.length, 1, "an admissible launch goes through");
  });

  it("the postmaster's dispatch refuses a request that skipped the launcher", async () => {
    const handler = new CountingHandler();
    await assert.rejects(dispatchRequest(handler, { id: 1, op: "launch", definition: foreign() }, 4242), hasCode("ERR_BGWORKER_NOTIFY_PID"));
    assert.equal(handler.launches, 0);
    await dispatchRequest(handler, { id: 2, op: "launch", definition: own(4242) }, 4242);
    assert.equal(handler.launches, 1);
  });

  it("a worker's IPC request is judged by the worker's pid", async () => {
    const handler = new CountingHandler();
    const wire = JSON.parse(JSON.stringify({ id: 7, op: "launch", definition: own(5555) })) as unknown;
    const refused = await answerRequest(handler, wire, 6666);
    assert.ok("ok" in refused && !refused.ok);
    assert.equal(refused.error.code, "ERR_BGWORKER_NOTIFY_PID");
    assert.equal(handler.launches, 0);
    const admitted = await answerRequest(handler, wire, 5555);
    assert.ok("ok" in admitted && admitted.ok);
    assert.equal(handler.launches, 1);
  });

  describe("a raw control-socket frame", () => {
    let dir: string;
    let server: ControlServer;
    const handler = new CountingHandler();

    before(async () => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), "bgw-admission-"));
      server = new ControlServer({ path: path.join(dir, "bgworker.sock"), handler, logger: new Logger({ sink: () => undefined }) });
      await server.listen();
    });

    after(async () => {
      await server.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });

    it("is judged by the connection's hello pid", async () => {
      const socket = net.createConnection(path.join(dir, "bgworker.sock"));
      const lines: Array<Record<string, unknown>> = [];
      let buffer = "";
      const twoReplies = new Promise<void>((resolve) => {
        socket.on("data", (chunk) => {
          buffer += chunk.toString("utf8");
          for (let newline = buffer.indexOf("\n"); newline !== -1; newline = buffer.indexOf("\n")) {
            lines.push(JSON.parse(buffer.slice(0, newline)) as Record<string, unknown>);
            buffer = buffer.slice(newline + 1);
          }
          if (lines.length >= 2) resolve();
        });
      });
      socket.write(`{"v":1,"op":"hello","pid":4242}\n${JSON.stringify({ id: 1, op: "launch", definition: foreign() })}\n`);
      await twoReplies;
      socket.destroy();
      const reply = lines[1] as { ok: boolean; error: { name: string; code: string } };
      assert.equal(reply.ok, false);
      assert.equal(reply.error.name, "TypeError");
      assert.equal(reply.error.code, "ERR_BGWORKER_NOTIFY_PID");
      assert.equal(handler.launches, 0);
    });
  });

  it("a Postmaster in this process refuses both, and launches an admissible worker", async () => {
    const pm = new Postmaster({ extensions: [], database: false, socketPath: false, spareRunners: 0, logSink: () => undefined });
    await pm.start();
    try {
      await assert.rejects(builder().setNotifyPid(FOREIGN_PID).loadDynamic(), hasCode("ERR_BGWORKER_NOTIFY_PID"));
      await assert.rejects(builder().enableShmemAccess(() => undefined).loadDynamic(), hasCode("ERR_BGWORKER_STARTUP_HOOK"));
      assert.equal(pm.status().workers.length, 0, "nothing refused took a slot");
    } finally {
      await pm.stop("immediate");
    }
  });
});
