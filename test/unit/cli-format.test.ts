/** The CLI's pure parts: option value parsers and the status table. */
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { formatBytes, formatDuration, formatStatus } from "../../src/cli/format-status.js";
import { UsageError, parseOrUsage, expectPositionals } from "../../src/cli/usage.js";
import { parseDatum, parseMilliseconds, parsePid, parseRestartTime, parseStartTime, resolveLibrary } from "../../src/cli/values.js";
import { BgWorkerStartTime } from "../../src/definition.js";
import type { StatusReport, WorkerStatusRow } from "../../src/status.js";

function usage(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (error: unknown) => error instanceof UsageError && message.test(error.message) && !error.line().includes("\n"));
}

describe("--arg", () => {
  it("parses numbers, bigints, booleans and null with their JS types", () => {
    assert.equal(parseDatum("launch", "123"), 123);
    assert.equal(parseDatum("launch", "-1.5"), -1.5);
    assert.equal(parseDatum("launch", "1e3"), 1000);
    assert.equal(parseDatum("launch", "123n"), 123n);
    assert.equal(parseDatum("launch", "-9223372036854775808n"), -(2n ** 63n));
    assert.equal(parseDatum("launch", "true"), true);
    assert.equal(parseDatum("launch", "false"), false);
    assert.equal(parseDatum("launch", "null"), null);
  });

  it("refuses anything else, saying what a Datum is", () => {
    for (const text of ["abc", "", "12x", "1.5n", "0x10", "1e999", "NaN", "Infinity", "True", "01n", " 1"]) {
      usage(() => parseDatum("launch", text), /is not a Datum: use a number \(123, -1\.5\), a bigint \(123n\), true, false or null$/);
    }
  });
});

describe("other option values", () => {
  it("--start-time takes short names and enum names", () => {
    assert.equal(parseStartTime("launch", "postmaster"), BgWorkerStartTime.PostmasterStart);
    assert.equal(parseStartTime("launch", "consistent"), BgWorkerStartTime.ConsistentState);
    assert.equal(parseStartTime("launch", "recovery-finished"), BgWorkerStartTime.RecoveryFinished);
    assert.equal(parseStartTime("launch", "RecoveryFinished"), BgWorkerStartTime.RecoveryFinished);
    assert.equal(parseStartTime("launch", "ConsistentState"), BgWorkerStartTime.ConsistentState);
    usage(() => parseStartTime("launch", "soon"), /^--start-time "soon" must be postmaster, consistent or recovery-finished/);
  });

  it("--restart-time takes milliseconds or never", () => {
    assert.equal(parseRestartTime("launch", "never"), null);
    assert.equal(parseRestartTime("launch", "0"), 0);
    assert.equal(parseRestartTime("launch", "1500"), 1500);
    usage(() => parseRestartTime("launch", "1.5s"), /^--restart-time "1.5s" must be a number of milliseconds or "never"$/);
    usage(() => parseMilliseconds("stop", "timeout", "-1"), /^--timeout "-1" must be a number of milliseconds$/);
  });

  it("tells pids from handles", () => {
    assert.equal(parsePid("4242"), 4242);
    assert.equal(parsePid("0"), undefined);
    assert.equal(parsePid("bgw1:pm:0:1"), undefined);
  });

  it("makes relative library paths absolute and leaves package names alone", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bgw-lib-"));
    try {
      fs.writeFileSync(path.join(dir, "worker.ts"), "");
      assert.equal(resolveLibrary("./w.ts", dir), path.join(dir, "w.ts"));
      assert.equal(resolveLibrary("../w.ts", dir), path.join(path.dirname(dir), "w.ts"));
      assert.equal(resolveLibrary("worker.ts", dir), path.join(dir, "worker.ts"));
      assert.equal(resolveLibrary("/abs/w.ts", dir), "/abs/w.ts");
      assert.equal(resolveLibrary("some-package", dir), "some-package");
      assert.equal(resolveLibrary("@scope/pkg/worker.js", dir), "@scope/pkg/worker.js");
      assert.equal(resolveLibrary("file:///x/w.js", dir), "file:///x/w.js");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("turns parseArgs errors into one-line usage errors", () => {
    const options = { wait: { type: "boolean" }, mode: { type: "string" } } as const;
    usage(() => parseOrUsage("stop", { args: ["--nope"], options }), /^unknown option --nope$/);
    usage(() => parseOrUsage("stop", { args: ["--mode"], options }), /^option --mode needs a value$/);
    usage(() => parseOrUsage("stop", { args: ["--wait=yes"], options }), /^option --wait does not take a value$/);
    usage(() => parseOrUsage("stop", { args: ["--mode", "-x"], options }), /^option --mode needs a value \(for a value starting with "-", write --mode=VALUE\)$/);
    usage(() => parseOrUsage("stop", { args: ["extra"], options }), /^unexpected argument "extra"$/);
    usage(() => expectPositionals("terminate", [], ["PID or HANDLE"]), /^missing PID or HANDLE$/);
    usage(() => expectPositionals("terminate", ["1", "2"], ["PID or HANDLE"]), /^unexpected argument "2"$/);
    assert.equal(new UsageError("bad", "stop").line(), 'bad (see "bgworker stop --help")');
    assert.equal(new UsageError("bad").line(), 'bad (see "bgworker --help")');
  });
});

describe("status table", () => {
  const row = (patch: Partial<WorkerStatusRow>): WorkerStatusRow => ({
    slot: 0, name: "counter", type: "counter", pid: 4242, state: "running", startTime: "RecoveryFinished", restartTimeMs: null,
    restarts: 0, lastExit: null, notifyPid: 0, kind: "static", spi: true, shmem: true, backoffMs: null, handle: null, backendPid: 5151, ...patch,
  });
  const now = Date.parse("2026-01-01T12:00:00.000Z");
  const report: StatusReport = {
    postmaster: { pid: 100, phase: "running", database: "embedded (./.bgworker/pgdata)", uptimeMs: 3_723_000, shmemBytes: 4096, maxWorkerProcesses: 8, spares: { count: 1, ready: 1, target: 1, max: 8, pssBytes: 9_437_184 }, shutdown: null },
    workers: [
      row({ slot: 2, name: "dyn", type: "dyn-type", pid: null, backendPid: null, state: "backoff", startTime: "PostmasterStart", restartTimeMs: 1500, restarts: 6,
        lastExit: { code: 1, signal: null, at: "2026-01-01T11:59:48.000Z" }, notifyPid: 999, kind: "dynamic", spi: false, shmem: false,
        backoffMs: 3200, handle: "bgw1:pm:2:5" }),
      row({ uptimeMs: 125_000, cpuSeconds: 1.25, rssBytes: 48 * 1024 * 1024 }),
      row({ slot: 1, name: "crashy", type: "crashy", pid: null, backendPid: null, state: "stopped", lastExit: { code: null, signal: "SIGKILL", at: "2026-01-01T11:00:00.000Z" }, spi: false }),
    ],
  };

  it("shows the postmaster row and one aligned row per slot, sorted by slot", () => {
    const expected = [
      "postmaster pid 100: phase running, database embedded (./.bgworker/pgdata), up 1h2m, shared memory 4.0 KiB, 2 of 8 worker slots in use, 1 spare runner (1 warm, at most 8, 9.0 MiB)",
      "SLOT  NAME     TYPE      PID   BACKEND  STATE         UPTIME  CPU    RSS       START             RESTART  RESTARTS  LAST EXIT        NOTIFY  KIND     FLAGS      HANDLE",
      "0     counter  counter   4242  5151     running       2m5s    1.25s  48.0 MiB  RecoveryFinished  never    0         -                -       static   spi,shmem  -",
      "1     crashy   crashy    -     -        stopped       -       -      -         RecoveryFinished  never    0         SIGKILL, 1h ago  -       static   shmem      -",
      "2     dyn      dyn-type  -     -        backoff 3.2s  -       -      -         PostmasterStart   1.5s     6         exit 1, 12s ago  999     dynamic  -          bgw1:pm:2:5",
    ].join("\n");
    assert.equal(formatStatus(report, now), expected);
  });

  it("says so when there are no workers, and shows a shutdown", () => {
    const empty: StatusReport = { postmaster: { ...report.postmaster, shutdown: "smart", uptimeMs: 500 }, workers: [] };
    assert.equal(
      formatStatus(empty, now),
      "postmaster pid 100: phase running, database embedded (./.bgworker/pgdata), up 500ms, shared memory 4.0 KiB, 0 of 8 worker slots in use, 1 spare runner (1 warm, at most 8, 9.0 MiB), shutting down (smart)\n(no background workers)",
    );
  });

  it("formats durations and sizes", () => {
    assert.deepEqual([0, 999, 1000, 1550, 59_999, 60_000, 90_000, 3_600_000, 3_660_000, 86_400_000, 90_000_000].map(formatDuration),
      ["0ms", "999ms", "1s", "1.5s", "59.9s", "1m", "1m30s", "1h", "1h1m", "1d", "1d1h"]);
    assert.deepEqual([0, 1023, 1024, 1536, 5 * 1024 * 1024].map(formatBytes), ["0 B", "1023 B", "1.0 KiB", "1.5 KiB", "5.0 MiB"]);
  });
});
