/**
 * The runner pool's order of service, with stand-in processes (no fork): launches that find no warm spare
 * boot at most BOOT_LIMIT runners at a time and wait in order; a restart goes ahead of them and is never held
 * back by that limit, so it waits for one runner's boot at most. Static workers' first starts do not grow the
 * pool; launches that find no warm spare do.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import { describe, it } from "node:test";
import { BackgroundWorkerBuilder, definitionOf } from "../../src/builder.js";
import { BOOT_LIMIT, RunnerPool, type Runner } from "../../src/postmaster/runner-pool.js";

/** Above Linux's largest pid (2^22): a signal the pool sends to a stand-in can reach no real process. */
let nextPid = 5_000_000;

function definition(name: string): ReturnType<typeof definitionOf> {
  return definitionOf(new BackgroundWorkerBuilder(name).setLibrary("./lib.ts").setFunction("main"));
}

/** A runner process that boots when told to (`boot()`), and records what it was sent. */
class StandIn extends EventEmitter {
  readonly pid = nextPid++;
  connected = true;
  readonly stdio = [null, null, null, null, null];
  readonly stdout = null;
  readonly stderr = null;
  readonly sent: unknown[] = [];
  send(message: unknown): boolean {
    this.sent.push(message);
    return true;
  }
  disconnect(): void {
    this.connected = false;
  }
  boot(): void {
    this.emit("message", { t: "ready" });
  }
  enter(): void {
    this.emit("message", { t: "entered" });
  }
}

function pool(spares = 0, maxSpares = 0): { runners: RunnerPool; children: StandIn[] } {
  const children: StandIn[] = [];
  const runners = new RunnerPool(
    {
      spares,
      maxSpares,
      cwd: "/",
      shmem: () => null,
      database: () => null,
      spawnRunner: () => {
        const child = new StandIn();
        children.push(child);
        return child as unknown as ChildProcess;
      },
    },
    { message: () => undefined, output: () => undefined, exit: () => undefined },
  );
  return { runners, children };
}

describe("runner pool", () => {
  it("serves a restart before queued launches, past the boot limit", () => {
    const { runners, children } = pool();
    try {
      const served: string[] = [];
      const ask = (name: string, restart: boolean): void =>
        runners.request({
          definition: definition(name),
          restart,
          deliver: (runner: Runner) => served.push(`${name}:${runner.pid}`),
          fail: () => served.push(`${name}:withdrawn`),
          withdrawn: () => undefined,
        });
      for (let i = 0; i < BOOT_LIMIT + 2; i++) ask(`launch${i}`, false);
      assert.equal(served.length, BOOT_LIMIT, "launches boot at most BOOT_LIMIT runners at a time");
      ask("restarted", true);
      assert.equal(served.length, BOOT_LIMIT + 1, "the restart boots a runner at once");
      assert.match(served.at(-1)!, /^restarted:/);
      // The restart's boot counts too: the next queued launch comes, in order, once two of the boots are done.
      children[0]!.boot();
      children[0]!.enter();
      assert.match(served.at(-1)!, /^restarted:/);
      children[1]!.boot();
      children[1]!.enter();
      assert.match(served.at(-1)!, new RegExp(`^launch${BOOT_LIMIT}:`));
    } finally {
      runners.close();
    }
  });

  it("puts a restart ahead of a launch that was already waiting", () => {
    const { runners, children } = pool();
    try {
      const served: string[] = [];
      const ask = (name: string, restart: boolean): void =>
        runners.request({
          definition: definition(name),
          restart,
          deliver: () => served.push(name),
          fail: () => served.push(`${name}:withdrawn`),
          withdrawn: () => undefined,
        });
      for (let i = 0; i < BOOT_LIMIT; i++) ask(`launch${i}`, false);
      ask("waiting", false);
      ask("restarted", true);
      assert.deepEqual(served.slice(BOOT_LIMIT), ["restarted"], "the restart did not wait behind the queued launch");
      children[0]!.enter();
      children[1]!.enter();
      assert.deepEqual(served.slice(BOOT_LIMIT), ["restarted", "waiting"]);
    } finally {
      runners.close();
    }
  });

  it("grows the pool for launches that found no warm spare, not for static workers' first starts", () => {
    const { runners } = pool(1, 8);
    try {
      const ask = (name: string, staticStart: boolean): void =>
        runners.request({ definition: definition(name), staticStart, deliver: () => undefined, fail: () => undefined, withdrawn: () => undefined });
      for (let i = 0; i < 20; i++) ask(`static${i}`, true);
      assert.equal(runners.pool.target, 1, "twenty static starts left the target at the floor");
      ask("launched", false);
      assert.equal(runners.pool.target, 2, "a launch with no warm spare raised it by one");
    } finally {
      runners.close();
    }
  });
});
