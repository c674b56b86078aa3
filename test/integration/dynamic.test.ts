/**
 * Dynamic workers and their handles end to end (SPEC §5, issue 4), with a real postmaster process
 * (`bgworker start --no-database`): launches from the test process over the control socket and from inside
 * a worker over IPC, tracked and untracked handles, handles attached by another process, slot exhaustion,
 * the exit-code matrix, slot reuse, shutdown and postmaster death while clients wait, and the control
 * socket's robustness. Every test waits on outcomes, never on a fixed time.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import net from "node:net";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { describe, it, type TestContext } from "node:test";
import {
  BackgroundWorkerBuilder,
  BackgroundWorkerStatus,
  BackgroundWorkerStatusError,
  NoFreeWorkerSlotError,
  connect,
  type DynamicBackgroundWorker,
  type PostmasterClient,
  type WorkerStatusRow,
} from "bgworker";
import { alive, PATIENCE_MS, ROOT, startPostmaster, WORKERS_LIBRARY, type RunningPostmaster, type StartOptions, runNode, eventually } from "../helpers/postmaster.js";

const DYNAMIC_LIBRARY = join(ROOT, "test", "fixtures", "dynamic", "workers.ts");
const ATTACH_CLIENT = join(ROOT, "test", "fixtures", "dynamic", "attach-client.ts");
const LAUNCH_CLIENT = join(ROOT, "test", "fixtures", "dynamic", "launch-client.ts");

const { Started, Stopped, Untracked, PostmasterDied, NotYetStarted } = BackgroundWorkerStatus;

/** A postmaster and a client connected to it; both are closed (and every process checked gone) afterwards. */
async function withClient(options: StartOptions, body: (pm: RunningPostmaster, client: PostmasterClient) => Promise<void>): Promise<void> {
  const pm = await startPostmaster(options);
  let client: PostmasterClient | undefined;
  try {
    client = await connect(pm.socket);
    await body(pm, client);
  } finally {
    await client?.close();
    await pm.close();
  }
}

function dynamic(name: string, fn: string, library = DYNAMIC_LIBRARY): BackgroundWorkerBuilder {
  return new BackgroundWorkerBuilder(name).setLibrary(library).setFunction(fn);
}

function statusError(status: BackgroundWorkerStatus): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof BackgroundWorkerStatusError, `expected a BackgroundWorkerStatusError, got ${String(error)}`);
    assert.equal(error.status, status);
    return true;
  };
}

async function untilStatus(worker: DynamicBackgroundWorker, status: BackgroundWorkerStatus): Promise<void> {
  await eventually(`${worker.handle} to be ${status}`, async () => ((await worker.status()) === status ? true : undefined));
}

async function rowOf(client: PostmasterClient, handle: string): Promise<WorkerStatusRow> {
  const row = (await client.status()).find((r) => r.handle === handle);
  assert.ok(row !== undefined, `no status row for ${handle}`);
  return row;
}

/** Settles within `ms`, or says which promise hung: a waiter that is never told would hang the test. */
function settlesWithin<T>(promise: Promise<T>, what: string, ms = PATIENCE_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}


/** A temp dir removed after the test. */
function scratchDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), "bgw-dyn-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

// The suites are independent (one postmaster each) and mostly wait on processes: two at a time.
describe("dynamic workers", { concurrency: 2 }, () => {
  describe("scenario 4: launch, startup, terminate, final step", () => {
    it("from the test process over the control socket: argument 123, notify pid = self; the table ends at 124", async (t) => {
      await withClient({}, async (pm, client) => {
        const table = join(pm.dir, "counted");
        const t0 = performance.now();
        const worker = await client.loadDynamic(dynamic("counter", "counter").setArgument(123).setExtra(table));
        assert.equal(worker.notifyPid, process.pid, "loadDynamic defaults the notify pid to the caller");
        assert.match(worker.handle, new RegExp(`^bgw1:${client.postmasterId.replace(/\./g, "\\.")}:\\d+:\\d+$`));
        const pid = await worker.waitForStartup();
        const latency = performance.now() - t0;
        // Started means the function has been entered: its first statement (storing 123) has run or is running.
        const atStartup = existsSync(table) ? readFileSync(table, "utf8") : null;
        t.diagnostic(`launch -> waitForStartup ${latency.toFixed(1)} ms; table at startup: ${atStartup ?? "(not yet written)"}`);
        assert.ok(alive(pid), "the worker process runs");
        assert.notEqual(pid, pm.pid);
        assert.equal(await worker.status(), Started);
        assert.equal(await worker.pid(), pid);
        const row = await rowOf(client, worker.handle);
        assert.equal(row.state, "running");
        assert.equal(row.pid, pid);
        assert.equal(row.notifyPid, process.pid);
        assert.equal(row.kind, "dynamic");
        const [stored] = await pm.waitForEvents("stored", 1, (e) => e.pid === pid);
        assert.equal(stored?.value, 123);
        assert.equal(stored?.argument, 123, "the argument arrives as a number");
        assert.equal(readFileSync(table, "utf8"), "123");

        await settlesWithin(worker.terminate().waitForShutdown(), "terminate().waitForShutdown()");
        assert.equal(readFileSync(table, "utf8"), "124", "the loop saw waitLatch false and did its final step");
        const [final] = await pm.waitForEvents("final", 1, (e) => e.pid === pid);
        assert.equal(final?.sigterm, true);
        await pm.waitForLog(new RegExp(`^background worker "counter" \\(PID ${pid}\\) exited with exit code 0$`));
        assert.equal(await worker.status(), Stopped);
        await assert.rejects(worker.pid(), statusError(Stopped));
        await assert.rejects(worker.waitForStartup(), statusError(Stopped));
        await worker.waitForShutdown(); // already stopped: resolves at once
        assert.ok(!alive(pid));
      });
    });

    it("from another process with the implicit connection: connect(), then builder.loadDynamic()", async () => {
      await withClient({}, async (pm) => {
        const table = join(pm.dir, "counted");
        const run = await runNode(["--import", "tsx", LAUNCH_CLIENT, pm.socket, table]);
        assert.equal(run.code, 0, run.stderr);
        const report = JSON.parse(run.stdout.trim()) as Record<string, any>;
        assert.match(String(report.beforeConnect), /call connect\(\) first/, "before connect() there is no postmaster to ask");
        assert.equal(report.notifyPid, report.pid, "the notify pid defaults to the launching process");
        assert.ok(String(report.handle).startsWith(`bgw1:${report.postmaster}:`));
        assert.equal(report.status, Started);
        assert.equal(report.statusAfter, Stopped);
        assert.equal(report.value, "124");
        const [stored] = await pm.waitForEvents("stored", 1, (e) => e.pid === report.workerPid);
        assert.equal(stored?.value, 123);
        await pm.waitForLog(new RegExp(`^background worker "outside counter" \\(PID ${report.workerPid}\\) exited with exit code 0$`));
      });
    });

    it("from inside a worker over IPC: the same, with the worker as the notify pid; untracked waits are refused", async (t) => {
      // The launcher gets the table's path in its extra, so it must be known before the postmaster starts.
      const dir = scratchDir(t);
      const table = join(dir, "counted");
      const withLauncher = await startPostmaster({
        workers: [{ name: "launcher", library: DYNAMIC_LIBRARY, function: "launcher", extra: table }],
      });
      try {
        const [launched] = await withLauncher.waitForEvents("inner-launched");
        const launcherPid = launched!.pid;
        assert.equal(launched?.notifyPid, launcherPid, "a worker's loadDynamic defaults the notify pid to the worker itself");
        const [started] = await withLauncher.waitForEvents("inner-started");
        const childPid = Number(started?.childPid);
        assert.ok(childPid > 0 && childPid !== launcherPid && childPid !== withLauncher.pid);
        assert.equal(started?.status, Started);
        assert.equal(started?.pidCall, childPid);
        t.diagnostic(`inside a worker over IPC: launch -> waitForStartup ${Number(started?.latencyMs).toFixed(1)} ms; table at startup: ${String(started?.valueAtStartup)}`);
        const [stored] = await withLauncher.waitForEvents("stored", 1, (e) => e.pid === childPid);
        assert.equal(stored?.value, 123);
        const [stopped] = await withLauncher.waitForEvents("inner-stopped");
        assert.equal(stopped?.status, Stopped);
        assert.equal(stopped?.value, "124", "terminate -> the loop's final step ran before waitForShutdown resolved");
        assert.deepEqual((stopped?.pidAfter as { status: string }).status, Stopped);
        const [untracked] = await withLauncher.waitForEvents("inner-untracked");
        assert.equal(untracked?.notifyPid, 0);
        for (const wait of ["startup", "shutdown"] as const) {
          const outcome = untracked?.[wait] as { ok: boolean; status: string; isStatusError: boolean };
          assert.equal(outcome.ok, false, `${wait} of an untracked handle must be refused`);
          assert.equal(outcome.isStatusError, true);
          assert.equal(outcome.status, Untracked);
        }
        assert.equal(untracked?.value, "8", "the untracked worker ran and was terminated too");
        const [refused] = await withLauncher.waitForEvents("inner-refused");
        assert.equal(refused?.ok, false, "a foreign notify pid is refused over IPC as on every path");
        assert.equal(refused?.name, "TypeError");
        assert.equal(refused?.code, "ERR_BGWORKER_NOTIFY_PID");
        assert.match(String(refused?.message), /notify pid \d+ of background worker "inner foreign" must be 0 or the launching process's pid/);
        assert.match(String(refused?.stack), /fixtures\/dynamic\/workers\.ts/, "the stack shows the line that launched");
        await withLauncher.waitForLog(new RegExp(`^background worker "launcher" \\(PID ${launcherPid}\\) exited with exit code 0$`));
        await withLauncher.waitForLog(new RegExp(`^background worker "inner counter" \\(PID ${childPid}\\) exited with exit code 0$`));
      } finally {
        await withLauncher.close();
      }
    });

    it("a worker outlives the worker that launched it; the launcher's notifications are cancelled", async (t) => {
      const table = join(scratchDir(t), "orphan");
      await withClient({ workers: [{ name: "leaver", library: DYNAMIC_LIBRARY, function: "launchAndLeave", extra: table }] }, async (pm2, client) => {
        const [left] = await pm2.waitForEvents("left");
        const leaverPid = left!.pid;
        const childPid = Number(left?.childPid);
        await pm2.waitForLog(new RegExp(`^background worker "leaver" \\(PID ${leaverPid}\\) exited with exit code 0$`));
        const handle = String(left?.handle);
        const row = await eventually("the orphan's notify pid to be cancelled", async () => {
          const r = await rowOf(client, handle);
          return r.notifyPid === 0 ? r : undefined;
        });
        assert.equal(row.state, "running");
        assert.equal(row.pid, childPid);
        assert.ok(alive(childPid));
        const attached = client.attach(handle);
        assert.equal(await attached.pid(), childPid);
        await attached.terminate().waitForShutdown().catch(() => undefined);
        await untilStatus(attached, Stopped);
        assert.equal(readFileSync(table, "utf8"), "2");
      });
    });
  });

  describe("scenario 5: untracked handles and handles attached by another process", () => {
    it("setNotifyPid(0): waits reject Untracked; status, pid and terminate still work", async () => {
      await withClient({}, async (pm, client) => {
        const worker = await client.loadDynamic(dynamic("loner", "idle").setArgument(5).setNotifyPid(0));
        assert.equal(worker.notifyPid, 0);
        await assert.rejects(worker.waitForStartup(), statusError(Untracked));
        await assert.rejects(worker.waitForShutdown(), statusError(Untracked));
        await untilStatus(worker, Started);
        const pid = await worker.pid();
        const [started] = await pm.waitForEvents("started", 1, (e) => e.name === "loner");
        assert.equal(started?.pid, pid);
        assert.equal((await rowOf(client, worker.handle)).notifyPid, 0);
        // Waiting is refused even while it runs, and terminating needs no notify pid.
        await assert.rejects(worker.waitForStartup(), statusError(Untracked));
        await assert.rejects(worker.terminate().waitForShutdown(), (error) => error instanceof BackgroundWorkerStatusError);
        await untilStatus(worker, Stopped);
        await pm.waitForLog(new RegExp(`^background worker "loner" \\(PID ${pid}\\) exited with exit code 0$`));
      });
    });

    it("another process attaches the serialised handle: it may query and terminate, but its waits are Untracked", async () => {
      await withClient({}, async (pm, client) => {
        const worker = await client.loadDynamic(dynamic("shared", "idle"));
        const pid = await worker.waitForStartup();
        const shutdown = worker.waitForShutdown(); // we are the notify pid: we are told when it goes
        const run = await runNode(["--import", "tsx", ATTACH_CLIENT, pm.socket, worker.handle, "terminate"]);
        assert.equal(run.code, 0, run.stderr);
        const report = JSON.parse(run.stdout.trim()) as Record<string, any>;
        assert.notEqual(report.pid, process.pid, "a different process");
        assert.equal(report.handle, worker.handle);
        assert.equal(report.notifyPid, 0, "an attached handle does not claim to be the notify pid");
        assert.equal(report.status, Started);
        assert.deepEqual(report.pidCall, { ok: true, value: pid });
        assert.deepEqual(report.waitForStartup, { ok: false, name: "BackgroundWorkerStatusError", isStatusError: true, status: Untracked });
        assert.deepEqual(report.waitForShutdown, { ok: false, name: "BackgroundWorkerStatusError", isStatusError: true, status: Untracked });
        // Its terminate went through (its own wait is Untracked, or Stopped if the worker was quicker).
        assert.ok(report.terminate.ok === true || report.terminate.status === Untracked, JSON.stringify(report.terminate));
        assert.equal(report.statusAfterTerminate, Stopped);
        await settlesWithin(shutdown, "the notify pid's waitForShutdown");
        await pm.waitForLog(new RegExp(`^background worker "shared" \\(PID ${pid}\\) exited with exit code 0$`));
        assert.equal(await worker.status(), Stopped);
        assert.ok((await client.status()).every((r) => r.state === "stopped"));
      });
    });
  });

  describe("scenario 6: more dynamic workers than free slots", () => {
    it("--max-worker-processes 3 with 1 static worker: 2 of 4 launches fail with NoFreeWorkerSlotError; the others stop cleanly", async () => {
      await withClient(
        { workers: [{ name: "static looper", function: "latchLoop" }], args: ["--no-database", "--max-worker-processes", "3"] },
        async (pm, client) => {
          const launches = await Promise.allSettled([1, 2, 3, 4].map((n) => client.loadDynamic(dynamic(`dyn${n}`, "idle").setArgument(n))));
          const ok = launches.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
          const failed = launches.flatMap((r) => (r.status === "rejected" ? [r.reason as unknown] : []));
          assert.equal(ok.length, 2);
          assert.equal(failed.length, 2);
          for (const error of failed) {
            assert.ok(error instanceof NoFreeWorkerSlotError, `instanceof across the socket: ${String(error)}`);
            assert.equal(error.name, "NoFreeWorkerSlotError");
            assert.match(error.message, /all 3 worker slots \(maxWorkerProcesses\) are in use/);
          }
          const pids = await Promise.all(ok.map((w) => w.waitForStartup()));
          // The static worker may still be loading its library (a cold runner): wait until all three run.
          const rows = await eventually("all three slots running", async () => {
            const current = await client.status();
            return current.every((r) => r.state === "running") ? current : undefined;
          });
          assert.equal(rows.length, 3);
          assert.ok(rows.every((r) => r.state === "running"), JSON.stringify(rows));
          await Promise.all(ok.map((w) => settlesWithin(w.terminate().waitForShutdown(), `terminate ${w.handle}`)));
          for (const pid of pids) {
            await pm.waitForLog(new RegExp(`^background worker "dyn\\d" \\(PID ${pid}\\) exited with exit code 0$`));
            assert.ok(!alive(pid));
          }
          assert.equal(pm.events("terminated").length, 2, "each loop ended on its own terms");
          const after = await client.status();
          assert.equal(after.find((r) => r.kind === "static")?.state, "running", "the static worker is untouched");
          // The freed slots take new workers.
          const again = await client.loadDynamic(dynamic("again", "idle"));
          await again.waitForStartup();
          await again.terminate().waitForShutdown();
        },
      );
    });
  });

  describe("scenario 8: exit codes of dynamic workers", () => {
    it("exit 0 is gone; exit 1 restarts after N ms on the same handle with a new pid; never-restart is gone; a crash without shared memory is like exit 1", async (t) => {
      await withClient({}, async (pm, client) => {
        const RESTART_MS = 300;
        // exit 0: done, even with a restart time.
        const done = await client.loadDynamic(dynamic("done", "startThenExit").setArgument(0).setRestartTime(RESTART_MS));
        await done.waitForStartup().catch(() => undefined); // it may already be gone
        await settlesWithin(done.waitForShutdown(), "exit 0 waitForShutdown");
        assert.equal(await done.status(), Stopped);
        const doneRow = await rowOf(client, done.handle);
        assert.equal(doneRow.state, "stopped");
        assert.equal(doneRow.lastExit?.code, 0);
        assert.equal(doneRow.restarts, 0);

        // exit 1 with a restart time: back after RESTART_MS, same handle, new pid.
        const flaky = await client.loadDynamic(dynamic("flaky", "exitOnce").setArgument(1).setRestartTime(RESTART_MS).setExtra(join(pm.dir, "flaky")));
        const [run1] = await pm.waitForEvents("started", 1, (e) => e.name === "flaky" && e.run === 1);
        const [run2] = await pm.waitForEvents("started", 1, (e) => e.name === "flaky" && e.run === 2);
        const [exiting] = await pm.waitForEvents("exiting", 1, (e) => e.name === "flaky");
        const gap = Number(run2!.at) - Number(exiting!.at);
        assert.ok(gap >= RESTART_MS, `restarted ${gap} ms after exit 1, before the restart time of ${RESTART_MS} ms`);
        t.diagnostic(`exit 1 -> restarted worker running: ${gap} ms (restart time ${RESTART_MS} ms)`);
        assert.notEqual(run2!.pid, run1!.pid, "a new process");
        assert.equal(await flaky.waitForStartup(), run2!.pid, "the same handle reaches the new process");
        assert.equal(await flaky.pid(), run2!.pid);
        const flakyRow = await rowOf(client, flaky.handle);
        assert.equal(flakyRow.restarts, 1);
        assert.equal(flakyRow.lastExit?.code, 1);
        assert.equal(flakyRow.state, "running");
        await pm.waitForLog(new RegExp(`^background worker "flaky" \\(PID ${run1!.pid}\\) exited with exit code 1$`));

        // A crash (exit 3) of a worker without shared memory is handled like exit 1.
        const crashy = await client.loadDynamic(dynamic("crashy", "exitOnce").setArgument(3).setRestartTime(RESTART_MS).setExtra(join(pm.dir, "crashy")));
        const [crashRun2] = await pm.waitForEvents("started", 1, (e) => e.name === "crashy" && e.run === 2);
        assert.equal(await crashy.waitForStartup(), crashRun2!.pid);
        assert.equal((await rowOf(client, crashy.handle)).lastExit?.code, 3);

        // exit 1, never restart: gone.
        const once = await client.loadDynamic(dynamic("once", "startThenExit").setArgument(1).setRestartTime(null));
        await settlesWithin(once.waitForShutdown(), "never-restart waitForShutdown");
        assert.equal(await once.status(), Stopped);
        const onceRow = await rowOf(client, once.handle);
        assert.equal(onceRow.lastExit?.code, 1);
        assert.equal(onceRow.restarts, 0);

        // A terminated worker never restarts, though SIGTERM's default exit code is 1 and it has a restart time.
        const stubborn = await client.loadDynamic(dynamic("stubborn", "sleepForever", WORKERS_LIBRARY).setRestartTime(RESTART_MS));
        const stubbornPid = await stubborn.waitForStartup();
        await settlesWithin(stubborn.terminate().waitForShutdown(), "terminate of a restartable worker");
        await pm.waitForLog(new RegExp(`^background worker "stubborn" \\(PID ${stubbornPid}\\) exited with exit code 1$`));
        const stubbornRow = await rowOf(client, stubborn.handle);
        assert.equal(stubbornRow.state, "stopped");
        assert.equal(stubbornRow.restarts, 0);

        // Terminated while waiting for its restart: unregistered at once, its waiter learns Stopped.
        const pending = await client.loadDynamic(dynamic("pending", "exitOnce").setArgument(1).setRestartTime(60_000).setExtra(join(pm.dir, "pending")));
        await eventually("pending in backoff", async () => ((await rowOf(client, pending.handle)).state === "backoff" ? true : undefined));
        // Handlers attached at once: a rejection must never be unhandled, even for a moment.
        const pendingStartup = assert.rejects(pending.waitForStartup(), statusError(Stopped));
        await settlesWithin(pending.terminate().waitForShutdown(), "terminate of a worker in backoff");
        await settlesWithin(pendingStartup, "waitForStartup of a worker terminated in backoff");
        assert.equal(await pending.status(), Stopped);

        for (const worker of [flaky, crashy]) await worker.terminate().waitForShutdown();
        // Nothing comes back. A probe that fails after all of them with the same restart time is restarted
        // by a timer armed after any of theirs could have been: once it runs again, a restart of theirs would
        // have begun, yet every other slot is still stopped (stopped slots get reused, so the rows are not
        // looked up by name here).
        const restarts = (): number => pm.logs(/^background worker "(done|once|stubborn|flaky|crashy|pending)" \(PID \d+\) exited/).length;
        const before = restarts();
        const probe = await client.loadDynamic(dynamic("probe", "exitOnce").setArgument(1).setRestartTime(RESTART_MS).setExtra(join(pm.dir, "probe")));
        await pm.waitForEvents("started", 1, (e) => e.name === "probe" && e.run === 2);
        assert.equal(restarts(), before);
        const rows = await client.status();
        for (const row of rows.filter((r) => r.handle !== probe.handle)) {
          assert.equal(row.state, "stopped", JSON.stringify(row));
          assert.equal(row.pid, null);
        }
        await probe.terminate().waitForShutdown();
      });
    });

    it("a handle to a slot that was reused reports Stopped, never the new worker", async () => {
      await withClient({ args: ["--no-database", "--max-worker-processes", "1"] }, async (_pm, client) => {
        const first = await client.loadDynamic(dynamic("first", "startThenExit").setArgument(0));
        await first.waitForShutdown();
        const second = await client.loadDynamic(dynamic("second", "idle"));
        const secondPid = await second.waitForStartup();
        const [, , slot1, gen1] = first.handle.split(":");
        const [, , slot2, gen2] = second.handle.split(":");
        assert.equal(slot2, slot1, "the only slot was reused");
        assert.equal(Number(gen2), Number(gen1) + 1, "with the next generation");
        assert.notEqual(second.handle, first.handle);
        assert.equal(await first.status(), Stopped);
        await assert.rejects(first.pid(), statusError(Stopped));
        await assert.rejects(first.waitForStartup(), statusError(Stopped));
        await first.waitForShutdown();
        const stale = client.attach(first.handle);
        assert.equal(await stale.status(), Stopped);
        // Terminating the old handle must not touch the new worker.
        await first.terminate().waitForShutdown();
        await client.terminate(first.handle);
        assert.equal(await second.status(), Started);
        assert.equal(await second.pid(), secondPid);
        assert.ok(alive(secondPid));
        const [row] = await client.status();
        assert.equal(row?.handle, second.handle);
        assert.equal(row?.name, "second");
        await second.terminate().waitForShutdown();
      });
    });
  });

  describe("shutdown and postmaster death while clients wait", () => {
    it("smart (SIGTERM): new launches are refused at once, waiters are told, a dynamic worker finishes on its own", async () => {
      await withClient({ workers: [{ name: "static looper", function: "latchLoop" }] }, async (pm, client) => {
        const trigger = join(pm.dir, "go");
        const finisher = await client.loadDynamic(dynamic("finisher", "finishOnFile").setExtra(trigger));
        const finisherPid = await finisher.waitForStartup();
        // A worker in its restart backoff has no process: shutdown forgets it and its waiter learns Stopped.
        const sleeper = await client.loadDynamic(dynamic("sleeper", "exitOnce").setArgument(1).setRestartTime(60_000).setExtra(join(pm.dir, "sleeper")));
        await eventually("sleeper in backoff", async () => ((await rowOf(client, sleeper.handle)).state === "backoff" ? true : undefined));
        assert.equal(await sleeper.status(), NotYetStarted);
        const sleeperStartup = assert.rejects(sleeper.waitForStartup(), statusError(Stopped));
        const finisherShutdown = finisher.waitForShutdown();

        pm.signal("SIGTERM");
        await pm.waitForLog(/^received smart shutdown request$/);
        await settlesWithin(sleeperStartup, "the backoff worker's waitForStartup");
        await assert.rejects(client.loadDynamic(dynamic("late", "idle")), (error: unknown) => {
          assert.ok(error instanceof Error && !(error instanceof NoFreeWorkerSlotError));
          assert.match(error.message, /cannot register background worker "late": the postmaster is (shutting down|stopping)/);
          return true;
        });
        // Refused at once: while the dynamic worker still runs, before the shutdown could have gone any further.
        const report = await client.statusReport();
        assert.equal(report.postmaster.shutdown, "smart");
        // The dynamic worker keeps working, and so does the static one until the dynamic ones are done.
        assert.equal(await finisher.status(), Started);
        assert.equal(pm.events("loop-ended").length, 0);

        writeFileSync(trigger, "");
        await settlesWithin(finisherShutdown, "the finisher's waitForShutdown");
        const [finished] = await pm.waitForEvents("finished", 1, (e) => e.pid === finisherPid);
        assert.equal(finished?.sigterm, false, "smart shutdown let it finish without SIGTERM");
        assert.deepEqual(await settlesWithin(pm.exited, "postmaster exit"), { code: 0, signal: null });
        const [ended] = pm.events("loop-ended");
        assert.equal(ended?.sigterm, true, "then the static worker was stopped as in a fast shutdown");
        await pm.waitForLog(new RegExp(`^background worker "finisher" \\(PID ${finisherPid}\\) exited with exit code 0$`));
      });
    });

    it("fast (client.stop): waiters are told, and afterwards handles report PostmasterDied", async () => {
      await withClient({ workers: [{ name: "static looper", function: "latchLoop" }] }, async (pm, client) => {
        const worker = await client.loadDynamic(dynamic("busy", "idle"));
        const pid = await worker.waitForStartup();
        const sleeper = await client.loadDynamic(dynamic("sleeper", "exitOnce").setArgument(1).setRestartTime(60_000).setExtra(join(pm.dir, "sleeper")));
        await eventually("sleeper in backoff", async () => ((await rowOf(client, sleeper.handle)).state === "backoff" ? true : undefined));
        const sleeperStartup = assert.rejects(sleeper.waitForStartup(), statusError(Stopped));
        const shutdown = worker.waitForShutdown().then(
          () => "resolved",
          (error: unknown) => (error instanceof BackgroundWorkerStatusError ? error.status : String(error)),
        );
        await client.stop("fast");
        await settlesWithin(sleeperStartup, "the backoff worker's waitForStartup");
        // The worker stopped (SIGTERM -> its loop ended, exit 0) while the postmaster was still there to say so.
        const outcome = await settlesWithin(shutdown, "waitForShutdown during a fast shutdown");
        assert.ok(outcome === "resolved" || outcome === PostmasterDied, outcome);
        assert.equal(outcome, "resolved", "the worker stopped before the postmaster went: waitForShutdown resolves");
        await settlesWithin(client.closed, "the connection's end");
        assert.deepEqual(await settlesWithin(pm.exited, "postmaster exit"), { code: 0, signal: null });
        await pm.waitForLog(new RegExp(`^background worker "busy" \\(PID ${pid}\\) exited with exit code 0$`));
        assert.equal(await worker.status(), PostmasterDied);
        await assert.rejects(worker.waitForStartup(), statusError(PostmasterDied));
        await assert.rejects(worker.waitForShutdown(), statusError(PostmasterDied));
        await assert.rejects(client.loadDynamic(dynamic("later", "idle")), /closed the connection/);
      });
    });

    it("postmaster killed while a client waits: the waits reject PostmasterDied and no worker outlives it", async () => {
      await withClient({}, async (pm, client) => {
        const worker = await client.loadDynamic(dynamic("victim", "idle"));
        const pid = await worker.waitForStartup();
        const sleeper = await client.loadDynamic(dynamic("sleeper", "exitOnce").setArgument(1).setRestartTime(60_000).setExtra(join(pm.dir, "sleeper")));
        await eventually("sleeper in backoff", async () => ((await rowOf(client, sleeper.handle)).state === "backoff" ? true : undefined));
        const shutdown = assert.rejects(worker.waitForShutdown(), statusError(PostmasterDied));
        const startup = assert.rejects(sleeper.waitForStartup(), statusError(PostmasterDied));
        pm.signal("SIGKILL");
        await settlesWithin(shutdown, "waitForShutdown after SIGKILL");
        await settlesWithin(startup, "waitForStartup after SIGKILL");
        assert.equal(await worker.status(), PostmasterDied);
        await assert.rejects(worker.pid(), statusError(PostmasterDied));
        await assert.rejects(worker.terminate().waitForShutdown(), statusError(PostmasterDied));
        await assert.rejects(client.status(), /closed the connection/);
        assert.deepEqual(await pm.exited, { code: null, signal: "SIGKILL" });
        await eventually("the orphaned worker to end itself", async () => (alive(pid) ? undefined : true), 5_000);
      });
    });
  });

  describe("the control socket", () => {
    it("is owner-only (0600); malformed JSON and an oversized frame get an error reply, and nobody else notices", async () => {
      await withClient({}, async (pm, client) => {
        assert.equal(statSync(pm.socket).mode & 0o777, 0o600);

        const raw = net.createConnection(pm.socket);
        const replies: Record<string, any>[] = [];
        let notify: () => void = () => undefined;
        createInterface({ input: raw }).on("line", (line) => {
          replies.push(JSON.parse(line) as Record<string, any>);
          notify();
        });
        const closed = new Promise<void>((resolve) => raw.once("close", () => resolve()));
        raw.on("error", () => undefined);
        const reply = async (n: number): Promise<Record<string, any>> => {
          await settlesWithin(
            new Promise<void>((resolve) => {
              notify = () => replies.length >= n && resolve();
              notify();
            }),
            `reply ${n}`,
          );
          return replies[n - 1]!;
        };
        try {
          raw.write(JSON.stringify({ v: 1, op: "hello", pid: process.pid, id: 0 }) + "\n");
          assert.equal((await reply(1)).ok, true);
          raw.write("{this is not json\n");
          const bad = await reply(2);
          assert.equal(bad.ok, false);
          assert.equal(bad.id, null);
          assert.equal(bad.error.name, "ProtocolError");
          assert.match(bad.error.message, /not valid JSON/);
          raw.write(JSON.stringify({ id: 7, op: "launch", definition: { name: "x" } }) + "\n");
          const badDefinition = await reply(3);
          assert.equal(badDefinition.id, 7);
          assert.equal(badDefinition.ok, false);
          raw.write(JSON.stringify({ id: 8, op: "status" }) + "\n");
          const status = await reply(4);
          assert.equal(status.id, 8);
          assert.equal(status.ok, true, "the connection stays usable after malformed frames");
          assert.equal(status.result.postmaster.pid, pm.pid);

          // An oversized frame: an error reply, then this connection (only) is closed.
          raw.write("x".repeat(70_000));
          const oversized = await reply(5);
          assert.equal(oversized.ok, false);
          assert.equal(oversized.id, null);
          assert.match(oversized.error.message, /exceeds the limit of 65536 bytes/);
          await settlesWithin(closed, "the oversized connection's close");
        } finally {
          raw.destroy();
        }

        // The postmaster and the other client carry on.
        assert.equal(pm.child.exitCode, null);
        assert.equal((await client.statusReport()).postmaster.pid, pm.pid);
        const worker = await client.loadDynamic(dynamic("after", "idle"));
        await worker.waitForStartup();
        await worker.terminate().waitForShutdown();
      });
    });
  });

  describe("launch latency", () => {
    it("launch -> Started through a warm spare runner", async (t) => {
      await withClient({}, async (_pm, client) => {
        const latencies: number[] = [];
        for (let i = 0; i < 3; i++) {
          // Measurement only: give the postmaster time to boot its next spare runner (Node, the runtime and
          // the package's entry point); a launch that comes earlier is served all the same, only slower.
          await new Promise((resolve) => setTimeout(resolve, 1_500));
          const t0 = performance.now();
          const worker = await client.loadDynamic(dynamic(`timed${i}`, "idle"));
          await worker.waitForStartup();
          latencies.push(performance.now() - t0);
          await worker.terminate().waitForShutdown();
        }
        // A measurement (docs/performance.md), not a rule: SPEC sets no bound on a launch, so only that each
        // launch reached Started is asserted; how fast depends on the machine.
        t.diagnostic(`launch -> waitForStartup via a warm spare: median ${median(latencies).toFixed(1)} ms, all ${latencies.map((l) => l.toFixed(1)).join(", ")} ms`);
        assert.equal(latencies.length, 3);
      });
    });
  });
});
