/** Static workers as real processes: the function's outcome, exit codes, restart rules, library errors. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { startPostmaster, type RunningPostmaster } from "../helpers/postmaster.js";

async function withPostmaster(
  options: Parameters<typeof startPostmaster>[0],
  body: (pm: RunningPostmaster) => Promise<void>,
): Promise<void> {
  const pm = await startPostmaster(options);
  try {
    await body(pm);
  } finally {
    await pm.close();
  }
}

const exitLine = (type: string, pid: number, code: number) => new RegExp(`^background worker "${type}" \\(PID ${pid}\\) exited with exit code ${code}$`);

describe("worker processes", () => {
  it("calls the function with the argument, same JS type, and exits 0 when it returns", async () => {
    await withPostmaster(
      {
        workers: [
          { name: "num", type: "reporter", function: "report", argument: 42.5, extra: "héllo" },
          { name: "big", function: "report", argument: { bigint: "18446744073709551615" } },
          { name: "bool", function: "report", argument: true },
          { name: "none", function: "report" },
        ],
      },
      async (pm) => {
        const reports = await pm.waitForEvents("report", 4);
        const byName = new Map(reports.map((r) => [r.name, r]));
        assert.deepEqual(
          [...byName.keys()].sort(),
          ["big", "bool", "none", "num"],
        );
        assert.equal(byName.get("num")?.argumentType, "number");
        assert.equal(byName.get("num")?.argument, 42.5);
        assert.equal(byName.get("num")?.type, "reporter");
        assert.equal(byName.get("num")?.extra, "héllo");
        assert.deepEqual(byName.get("num")?.extraBytes, [...Buffer.from("héllo")]);
        assert.equal(byName.get("big")?.argumentType, "bigint");
        assert.equal(byName.get("big")?.argument, "18446744073709551615n");
        assert.equal(byName.get("big")?.type, "big", "type defaults to the name");
        assert.equal(byName.get("bool")?.argumentType, "boolean");
        assert.equal(byName.get("none")?.argument, null);
        for (const report of reports) {
          await pm.waitForLog(exitLine(String(report.type), report.pid, 0));
        }
        // Each worker is its own OS process, none of them the postmaster.
        const pids = new Set(reports.map((r) => r.pid));
        assert.equal(pids.size, 4);
        assert.ok(!pids.has(pm.pid));
        const status = await pm.until("all stopped", () => (pm.logs(/exited with exit code 0/).length === 4 ? true : undefined));
        assert.ok(status);
      },
    );
  });

  it("logs a thrown error and exits 1; process.exit(n) exits n", async () => {
    await withPostmaster(
      {
        workers: [
          { name: "thrower", function: "throwError" },
          { name: "async-thrower", function: "throwAsync" },
          { name: "exit3", function: "exitWith", argument: 3 },
        ],
      },
      async (pm) => {
        const started = await pm.waitForEvents("started", 3);
        const pidOf = (name: string) => started.find((e) => pm.records.some((r) => r.worker?.name === name && r.worker.pid === e.pid))?.pid;
        const error = await pm.waitForLog(/something went wrong in the worker/);
        assert.equal(error.level, "ERROR");
        assert.equal(error.message, 'background worker "thrower": something went wrong in the worker');
        assert.match(error.detail ?? "", /workers\.ts/, "the stack is kept as detail");
        const asyncError = await pm.waitForLog(/async failure/);
        assert.equal(asyncError.level, "ERROR");
        await pm.waitForLog(exitLine("thrower", pidOf("thrower")!, 1));
        await pm.waitForLog(exitLine("async-thrower", pidOf("async-thrower")!, 1));
        await pm.waitForLog(exitLine("exit3", pidOf("exit3")!, 3));
      },
    );
  });

  it("a missing library or function logs the SPEC's line and exits 1", async () => {
    await withPostmaster(
      {
        workers: [
          { name: "nolib", function: "main", library: "./does-not-exist.ts" },
          { name: "nofn", function: "nope" },
          { name: "notfn", function: "notAFunction" },
        ],
      },
      async (pm) => {
        const noLib = await pm.waitForLog(/^background worker "nolib": function "main" not found in library/);
        assert.equal(noLib.message, 'background worker "nolib": function "main" not found in library "./does-not-exist.ts"');
        assert.match(noLib.detail ?? "", /Cannot find module|not found/i);
        const noFn = await pm.waitForLog(/^background worker "nofn": function "nope" not found/);
        assert.match(noFn.message, /not found in library ".*workers\.ts"$/);
        const notFn = await pm.waitForLog(/^background worker "notfn": function "notAFunction" not found/);
        assert.equal(notFn.detail, '"notAFunction" is a number, not a function');
        for (const name of ["nolib", "nofn", "notfn"]) {
          await pm.waitForLog(new RegExp(`^background worker "${name}" \\(PID \\d+\\) exited with exit code 1$`));
        }
      },
    );
  });
});

describe("restart rules", () => {
  it("exit 1 restarts after the restart time with a new pid; never-restart is gone; exit 0 is gone", async () => {
    await withPostmaster(
      {
        workers: [
          { name: "again", function: "runThenExit", argument: 1, restartTimeMs: 300 },
          { name: "once", function: "runThenExit", argument: 1 },
          { name: "done", function: "runThenExit", argument: 0, restartTimeMs: 0 },
        ],
      },
      async (pm) => {
        const pidsOf = (name: string) =>
          [...new Set(pm.records.filter((r) => r.worker?.name === name && r.worker.pid !== undefined).map((r) => r.worker!.pid!))];
        const exits = await pm.until("three runs of again", () => {
          const lines = pm.logs(/^background worker "again" \(PID \d+\) exited with exit code 1$/);
          return lines.length >= 3 ? lines : undefined;
        });
        const pids = exits.map((r) => r.worker?.pid);
        assert.equal(new Set(pids).size, 3, "each restart is a new process");
        // The next run starts no sooner than the restart time after the exit.
        const starts = pm.events("started").filter((e) => pids.includes(e.pid) || pidsOf("again").includes(e.pid));
        assert.ok(starts.length >= 3);
        const exitTimes = exits.map((r) => Date.parse(r.time));
        const startRecords = pidsOf("again").map((pid) => pm.records.find((r) => r.worker?.pid === pid)!);
        for (let i = 1; i < 3; i++) {
          const gap = Date.parse(startRecords[i]!.time) - exitTimes[i - 1]!;
          assert.ok(gap >= 290, `restart ${i} came ${gap} ms after the exit, before its 300 ms restart time`);
        }
        // Once and done have exited, and again has exited once more since, a restart time later: a restart of
        // theirs (at once for done, restart time 0) would have begun by then.
        const exitOf = (name: string, code: number): number =>
          pm.records.findIndex((r) => new RegExp(`^background worker "${name}" \\(PID \\d+\\) exited with exit code ${code}$`).test(r.message));
        await pm.until("the exits of once and done, then another of again", () => {
          const last = Math.max(exitOf("once", 1), exitOf("done", 0));
          if (exitOf("once", 1) < 0 || exitOf("done", 0) < 0) return undefined;
          return pm.records.slice(last + 1).some((r) => /^background worker "again" \(PID \d+\) exited with exit code 1$/.test(r.message)) ? true : undefined;
        });
        assert.equal(pidsOf("once").length, 1, "a never-restart worker runs once");
        assert.equal(pidsOf("done").length, 1, "exit 0 is never restarted");
      },
    );
  });

  it("death by SIGKILL is a crash, handled like exit 1 for a worker without shared memory", async () => {
    await withPostmaster(
      { workers: [{ name: "victim", function: "sleepForever", restartTimeMs: 100 }, { name: "bystander", function: "latchLoop" }] },
      async (pm) => {
        const [first] = await pm.waitForEvents("started", 2);
        const victim = pm.records.find((r) => r.worker?.name === "victim" && r.worker.pid !== undefined)!.worker!.pid!;
        const bystander = (await pm.waitForEvents("started", 2)).find((e) => e.pid !== victim)!.pid;
        assert.ok(first);
        process.kill(victim, "SIGKILL");
        await pm.waitForLog(new RegExp(`^background worker "victim" \\(PID ${victim}\\) was terminated by signal 9: Killed$`));
        const restarted = await pm.waitForEvents("started", 1, (e) => e.pid !== victim && e.pid !== bystander);
        assert.notEqual(restarted[0]!.pid, victim);
        assert.equal(pm.events("loop-ended").length, 0, "the other worker was not touched");
      },
    );
  });

  it("damps a restart storm: backoff shows in the log once a worker keeps failing fast", async () => {
    await withPostmaster({ workers: [{ name: "storm", function: "throwError", restartTimeMs: 0 }] }, async (pm) => {
      const line = await pm.waitForLog(/^background worker "storm" failed 5 times in a row within 1000 ms of starting; delaying its restart by 100 ms$/);
      assert.equal(line.level, "LOG");
      await pm.waitForLog(/delaying its restart by 200 ms$/);
    });
  });
});

describe("start-up errors", () => {
  it("refuses SPI workers without a database, with one clear line and exit 1", async () => {
    const pm = await startPostmaster({ workers: [{ name: "needs-db", function: "report", spi: true }], ready: false });
    const { code } = await pm.exited;
    assert.equal(code, 1);
    assert.deepEqual(pm.stderrText.filter((l) => l.startsWith("bgworker:")), [
      'bgworker: background worker "needs-db" requests database access (enableSpiAccess), but this postmaster serves no database (--no-database)',
    ]);
    await pm.close();
  });

  it("refuses an extension without _PG_init", async () => {
    const pm = await startPostmaster({ extensions: ["./nowhere.ts"], ready: false });
    const { code } = await pm.exited;
    assert.equal(code, 1);
    assert.match(pm.stderrText.join("\n"), /^bgworker: extension module not found: \/.*\/nowhere\.ts$/m);
    await pm.close();
  });
});
