/** The CLI's pure parts: option value parsers and the status table. */
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { formatBytes, formatClusterStatus, formatDuration, formatExpiry, formatSpan, formatStatus } from "../../src/cli/format-status.js";
import type { ClusterStatus } from "../../src/cluster/shell.js";
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

describe("cluster status (status --cluster)", () => {
  // The server's clock only: this host's Date.now() is never read, so a far-off serverNow changes nothing.
  const serverNow = Date.parse("2031-06-01T08:00:00.000Z");
  const status: ClusterStatus = {
    cluster: "prod",
    nodeId: "web-1",
    serverNow,
    nodes: [
      { nodeId: "web-1", host: "web-1.internal", pid: 4100, heartbeatAt: serverNow - 400, live: true },
      { nodeId: "web-2", host: "web-2.internal", pid: 52, heartbeatAt: serverNow - 1250, live: true },
      { nodeId: "web-3", host: "web-3.internal", pid: 777, heartbeatAt: serverNow - 3 * 3_600_000 - 300_000, live: false },
    ],
    leases: [
      { worker: "outbox-relay", holder: "web-1", generation: "3", expiresAt: serverNow + 3210 },
      { worker: "reaper", holder: "web-3", generation: "12", expiresAt: serverNow - 1000 },
      { worker: "reports", holder: null, generation: "9223372036854775807", expiresAt: serverNow - 75_000 },
    ],
  };

  it("shows every node with its heartbeat's age and liveness, then every lease with holder, generation and expiry", () => {
    assert.equal(
      formatClusterStatus(status),
      [
        "cluster prod, as seen by node web-1 (times by the database server's clock)",
        "NODE   HOST            PID   LAST HEARTBEAT  LIVE",
        "web-1  web-1.internal  4100  0.4 s ago       yes",
        "web-2  web-2.internal  52    1.2 s ago       yes",
        "web-3  web-3.internal  777   3h5m ago        no",
        "",
        "WORKER        HOLDER  GENERATION           LEASE",
        "outbox-relay  web-1   3                    expires in 3.2 s",
        "reaper        web-3   12                   expired 1.0 s ago",
        "reports       —       9223372036854775807  expired 1m15s ago",
      ].join("\n"),
    );
  });

  it("says so when no cluster-scoped worker has a lease yet", () => {
    assert.equal(
      formatClusterStatus({ ...status, nodes: status.nodes.slice(0, 1), leases: [] }),
      [
        "cluster prod, as seen by node web-1 (times by the database server's clock)",
        "NODE   HOST            PID   LAST HEARTBEAT  LIVE",
        "web-1  web-1.internal  4100  0.4 s ago       yes",
        "",
        "(no cluster-scoped worker has held a lease yet)",
      ].join("\n"),
    );
  });

  it("formats spans in tenths of a second up to a minute, never negative", () => {
    assert.deepEqual([0, 99, 400, 999, 1000, 59_999, 60_000, 90_000, -20, Number.NaN].map(formatSpan),
      ["0.0 s", "0.0 s", "0.4 s", "0.9 s", "1.0 s", "59.9 s", "1m", "1m30s", "0.0 s", "-"]);
    assert.equal(formatExpiry(10_000 + 3_200, 10_000), "expires in 3.2 s");
    assert.equal(formatExpiry(10_000, 10_000), "expired 0.0 s ago");
    assert.equal(formatExpiry(9_000, 10_000), "expired 1.0 s ago");
  });
});
