/**
 * The `bgworker` CLI end to end: `node dist/cli/main.js status|launch|terminate|stop` as child processes
 * against a real postmaster (`bgworker start --no-database`), and the same commands with no postmaster.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import type { StatusReport } from "bgworker";
import { alive, CLI, startPostmaster, type RunningPostmaster, runNode, eventually, type Run } from "../helpers/postmaster.js";

/** Relative to ROOT, where the CLI runs: the CLI makes it absolute for the postmaster. */
const LIBRARY = "./test/fixtures/dynamic/workers.ts";


/** Runs `bgworker ARGS...` from the project root to completion. */
function bgworker(...args: string[]): Promise<Run> {
  return runNode([CLI, ...args], { env: { ...process.env, BGWORKER_DEBUG: "" } });
}

function ok(run: Run): Run {
  assert.equal(run.code, 0, `exit ${run.code}: ${run.stderr}`);
  assert.equal(run.stderr, "");
  return run;
}

/** A failure: the exit status and exactly one line on stderr, matching `pattern`. */
function fails(run: Run, code: number, pattern: RegExp): void {
  assert.equal(run.code, code, `expected exit ${code}, got ${run.code}: ${run.stderr}`);
  const lines = run.stderr.split("\n");
  assert.equal(lines.length, 2, `one line on stderr, got ${JSON.stringify(run.stderr)}`);
  assert.equal(lines[1], "");
  assert.match(lines[0]!, pattern);
  assert.equal(run.stdout, "");
}

async function report(socket: string): Promise<StatusReport> {
  return JSON.parse(ok(await bgworker("status", "--json", "--socket", socket)).stdout) as StatusReport;
}

const ROW_KEYS = [
  "backendPid",
  "backoffMs",
  "cpuSeconds",
  "handle",
  "kind",
  "lastExit",
  "name",
  "notifyPid",
  "pid",
  "restartTimeMs",
  "restarts",
  "rssBytes",
  "scope",
  "shmem",
  "slot",
  "spi",
  "startTime",
  "state",
  "type",
  "uptimeMs",
];

describe("bgworker CLI against a running postmaster", () => {
  it("status, status --json, launch --wait, terminate PID --wait, terminate HANDLE, a full postmaster, stop --mode fast", async () => {
    const pm: RunningPostmaster = await startPostmaster({
      workers: [{ name: "static looper", function: "latchLoop" }],
      args: ["--no-database", "--max-worker-processes", "2"],
    });
    try {
      const socket = pm.socket;
      await pm.waitForEvents("started", 1);

      // status: the postmaster row, a header, one row per slot.
      const text = ok(await bgworker("status", "--socket", socket)).stdout.split("\n");
      assert.match(
        text[0]!,
        new RegExp(`^postmaster pid ${pm.pid}: phase running, database none \\(--no-database\\), up \\S+, shared memory 0 B, 1 of 2 worker slots in use, \\d+ spare runners? \\(\\d+ warm, at most \\d+, [\\d.]+ \\S+\\)$`),
      );
      assert.match(text[1]!, /^SLOT\s+NAME\s+TYPE\s+PID\s+BACKEND\s+STATE\s+UPTIME\s+CPU\s+RSS\s+START\s+RESTART\s+RESTARTS\s+LAST EXIT\s+NOTIFY\s+KIND\s+FLAGS\s+HANDLE$/);
      assert.match(text[2]!, /^0\s+static looper\s+static looper\s+\d+\s+-\s+running\s+\S+\s+\d+\.\d\ds\s+\d+\.\d [KMG]iB\s+PostmasterStart\s+never\s+0\s+-\s+-\s+static\s+-\s+-$/);
      assert.equal(text[3], "");

      // status --json: the whole report, SPEC §7's rows.
      const initial = await report(socket);
      assert.equal(initial.postmaster.pid, pm.pid);
      assert.equal(initial.postmaster.phase, "running");
      assert.equal(initial.postmaster.database, "none (--no-database)");
      assert.equal(initial.postmaster.maxWorkerProcesses, 2);
      assert.equal(initial.postmaster.shmemBytes, 0);
      assert.equal(initial.postmaster.shutdown, null);
      assert.ok(initial.postmaster.uptimeMs > 0);
      assert.equal(initial.workers.length, 1);
      const staticRow = initial.workers[0]!;
      assert.deepEqual(Object.keys(staticRow).sort(), ROW_KEYS);
      assert.equal(staticRow.backendPid, null, "no database session");
      assert.equal(staticRow.name, "static looper");
      assert.equal(staticRow.kind, "static");
      assert.equal(staticRow.state, "running");
      assert.ok(alive(staticRow.pid!));

      // launch --wait: the pid of a worker whose function is running, alone on its line.
      const launched = ok(await bgworker("launch", "--library", LIBRARY, "--function", "idle", "--arg", "5", "--wait", "--socket", socket));
      const [pidText, rest] = launched.stdout.split("\n");
      assert.match(pidText!, /^\d+$/);
      assert.equal(rest, "");
      const pid = Number(pidText);
      assert.ok(alive(pid));
      const [started] = await pm.waitForEvents("started", 1, (e) => e.pid === pid);
      assert.equal(started?.argument, 5);
      assert.equal(started?.name, "idle", "the name defaults to the function");
      // The CLI was the notify pid; it has exited, so its notifications are cancelled and the worker runs on.
      const row = await eventually("the launcher's notifications to be cancelled", async () => {
        const r = (await report(socket)).workers.find((w) => w.pid === pid);
        return r !== undefined && r.notifyPid === 0 ? r : undefined;
      });
      assert.equal(row.pid, pid);
      assert.equal(row.state, "running");
      assert.equal(row.kind, "dynamic");
      assert.match(ok(await bgworker("status", "--socket", socket)).stdout, /2 of 2 worker slots in use/);

      // Every slot is taken: one clear line, exit 1.
      fails(
        await bgworker("launch", "--library", LIBRARY, "--function", "idle", "--name", "one too many", "--socket", socket),
        1,
        /^bgworker: cannot register background worker "one too many": all 2 worker slots \(maxWorkerProcesses\) are in use$/,
      );

      // terminate PID --wait: returns once the worker has exited.
      ok(await bgworker("terminate", String(pid), "--wait", "--socket", socket));
      assert.ok(!alive(pid), "terminate --wait returned before the worker had exited");
      await pm.waitForLog(new RegExp(`^background worker "idle" \\(PID ${pid}\\) exited with exit code 0$`));
      assert.equal(pm.events("terminated").filter((e) => e.pid === pid).length, 1);

      // launch --json, then terminate HANDLE (no wait).
      const json = JSON.parse(
        ok(await bgworker("launch", "--library", LIBRARY, "--function", "idle", "--name", "second", "--json", "--wait", "--socket", socket)).stdout,
      ) as { handle: string; pid: number };
      assert.match(json.handle, /^bgw1:/);
      assert.ok(alive(json.pid));
      ok(await bgworker("terminate", json.handle, "--socket", socket));
      await pm.waitForLog(new RegExp(`^background worker "second" \\(PID ${json.pid}\\) exited with exit code 0$`));
      const afterTerminate = (await report(socket)).workers.find((w) => w.handle === json.handle);
      assert.equal(afterTerminate?.state, "stopped");

      // A pid that is no worker's, and a worker that cannot start.
      fails(await bgworker("terminate", "999999", "--socket", socket), 1, /^bgworker: no background worker with pid 999999$/);
      fails(
        await bgworker("launch", "--library", LIBRARY, "--function", "noSuchFunction", "--name", "broken", "--wait", "--socket", socket),
        1,
        /^bgworker: background worker "broken" \(bgw1:\S+\) did not start: it is Stopped \(see `bgworker logs --worker broken --log-file '?\/\S+\/\.bgworker\/log\/bgworker\.log'?`\)$/,
      );
      await pm.waitForLog(/^background worker "broken": function "noSuchFunction" not found in library "\/.*workers\.ts"$/);

      // stop --mode fast: waits until the postmaster has gone; it exits 0.
      ok(await bgworker("stop", "--mode", "fast", "--socket", socket));
      assert.ok(!existsSync(socket), "stop returned before the postmaster had shut down (its socket is still there)");
      assert.deepEqual(await pm.exited, { code: 0, signal: null });
      assert.equal(pm.events("loop-ended").length, 1, "the static worker got SIGTERM");
      assert.ok(!alive(staticRow.pid!));
    } finally {
      await pm.close();
    }
  });
});

function scratchDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), "bgw-cli-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

describe("bgworker CLI with no postmaster running", () => {
  it("every command fails with exit 1 and one clear line; usage errors still exit 2", async (t) => {
    const socket = join(scratchDir(t), "bgworker.sock");
    const nobody = new RegExp(`^bgworker: no postmaster running on ${socket.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`);
    const commands = [
      ["status"],
      ["status", "--json"],
      ["launch", "--library", LIBRARY, "--function", "idle", "--arg", "5", "--wait"],
      ["terminate", "12345"],
      ["terminate", "bgw1:abc.def:0:1", "--wait"],
      ["stop", "--mode", "fast"],
    ];
    const runs = await Promise.all(commands.map((args) => bgworker(...args, "--socket", socket)));
    runs.forEach((run, i) => {
      assert.doesNotThrow(() => fails(run, 1, nobody), `${commands[i]!.join(" ")}: ${JSON.stringify(run)}`);
    });
    // Usage errors are found before connecting.
    fails(
      await bgworker("launch", "--library", LIBRARY, "--function", "idle", "--arg", "hello", "--socket", socket),
      2,
      /^bgworker: --arg "hello" is not a Datum: .* \(see "bgworker launch --help"\)$/,
    );
  });
});
