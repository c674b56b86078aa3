/**
 * Shared memory through a real postmaster (`bgworker start --no-database`): pgShmemInit in _PG_init, the
 * startup hook, workers with and without access, contention between worker processes, the crash rule
 * (SPEC §6) and what is left in /dev/shm after an ordinary exit and after a SIGKILL.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readdirSync, statSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import type { StatusReport } from "../../src/status.js";
import type { ShmemTestWorker } from "../fixtures/shmem-postmaster/extension.js";
import { INITIAL_HITS, INITIAL_LABEL, INITIAL_MARKER } from "../fixtures/shmem-postmaster/shared.js";
import { alive, CLI, ROOT, startPostmaster, type RunningPostmaster, type WorkerEvent } from "../helpers/postmaster.js";

const run = promisify(execFile);
const EXTENSION = join(ROOT, "test", "fixtures", "shmem-postmaster", "extension.ts");
const LIBRARY = join(ROOT, "test", "fixtures", "shmem-postmaster", "workers.ts");
const SHM_DIR = "/dev/shm";
const INITIAL = { hits: INITIAL_HITS.toString(), count: "0", marker: INITIAL_MARKER, label: INITIAL_LABEL };
const ZEROED = { hits: "0", count: "0", marker: 0, label: "" };

/** The segments in /dev/shm made by the postmaster with this pid: `bgworker.<pid>.<n>`. */
function segments(pid: number): string[] {
  return readdirSync(SHM_DIR)
    .filter((file) => file.startsWith(`bgworker.${pid}.`))
    .sort();
}

/** Removes what a failed test may have left; returns the names it had to remove. */
function removeSegments(pid: number): string[] {
  const left = segments(pid);
  for (const file of left) unlinkSync(join(SHM_DIR, file));
  return left;
}

function start(workers: ShmemTestWorker[], args?: string[]): Promise<RunningPostmaster> {
  return startPostmaster({
    extensions: [EXTENSION],
    env: { BGW_SHMEM_WORKERS: JSON.stringify(workers) },
    ...(args === undefined ? {} : { args }),
  });
}

/**
 * Runs `body` against a postmaster and always cleans up: fast shutdown, no worker left (the helper checks),
 * and no segment of this postmaster left in /dev/shm (checked after an ordinary exit).
 */
async function withPostmaster(workers: ShmemTestWorker[], body: (pm: RunningPostmaster) => Promise<void>): Promise<void> {
  const pm = await start(workers);
  let failed = false;
  try {
    await body(pm);
  } catch (error) {
    failed = true;
    throw error;
  } finally {
    try {
      await pm.close();
    } finally {
      const left = removeSegments(pm.pid);
      if (!failed) assert.deepEqual(left, [], "an ordinary exit of the postmaster removes its segment");
    }
  }
}

/** The startup hook's lines on the postmaster's stdout. */
function hookRuns(pm: RunningPostmaster): { pid: number; run: number; found: unknown; after: unknown }[] {
  return pm.stdout.filter((line) => line.startsWith("{")).map((line) => JSON.parse(line) as { event: string; pid: number; run: number; found: unknown; after: unknown }).filter((e) => e.event === "startup-hook");
}

function waitForHookRuns(pm: RunningPostmaster, count: number): Promise<ReturnType<typeof hookRuns>> {
  return pm.until(`${count} startup hook run(s)`, () => {
    const runs = hookRuns(pm);
    return runs.length >= count ? runs : undefined;
  });
}

async function status(pm: RunningPostmaster): Promise<StatusReport> {
  const { stdout } = await run(process.execPath, [CLI, "status", "--json", "--socket", pm.socket], { cwd: pm.dir });
  return JSON.parse(stdout) as StatusReport;
}

function eventOf(pm: RunningPostmaster, event: string, name: string, nth = 1): Promise<WorkerEvent> {
  return pm.waitForEvents(event, nth, (e) => e.name === name).then((events) => events[nth - 1]!);
}

const exitLine = (type: string, pid: number, how: string) =>
  new RegExp(`^background worker "${type}" \\(PID ${pid}\\) ${how.replace(/[()]/g, "\\$&")}$`);
const KILLED = "was terminated by signal 9: Killed";

describe("shared memory through the postmaster", () => {
  it("sizes the segment in _PG_init; the startup hook initialises it; workers and the postmaster share it; no access is a clear error", async () => {
    await withPostmaster(
      [
        { name: "holder", function: "holder", hook: true },
        { name: "noacc", function: "noAccess", shmem: false },
      ],
      async (pm) => {
        // The segment exists while the postmaster runs, with the size the status reports.
        const report = await status(pm);
        assert.ok(report.postmaster.shmemBytes > 0, "pgShmemInit in _PG_init sizes the segment");
        const [segment, ...more] = segments(pm.pid);
        assert.equal(more.length, 0, "one segment");
        assert.equal(segment, `bgworker.${pm.pid}.1`);
        assert.equal(statSync(join(SHM_DIR, segment)).size, report.postmaster.shmemBytes);
        assert.equal((statSync(join(SHM_DIR, segment)).mode & 0o777).toString(8), "600");
        const flags = new Map(report.workers.map((row) => [row.name, row.shmem]));
        assert.deepEqual([flags.get("holder"), flags.get("noacc")], [true, false], "status flags");

        // The hook ran once, in the postmaster, on a zeroed segment, and reads back what it wrote.
        const [hook] = await waitForHookRuns(pm, 1);
        assert.equal(hook!.pid, pm.pid, "the startup hook runs in the postmaster");
        assert.deepEqual(hook!.found, ZEROED);
        assert.deepEqual(hook!.after, INITIAL);

        // A worker with access reads the hook's values and writes its own.
        const holder = await eventOf(pm, "holder", "holder");
        assert.deepEqual(holder.seen, INITIAL, "a worker reads what the postmaster's startup hook wrote");
        const written = { hits: (INITIAL_HITS + 5n).toString(), count: "0", marker: 99, label: `written by ${holder.pid}` };
        assert.deepEqual(holder.wrote, written);

        // Another process (a dynamic worker launched through the control socket) sees the holder's writes.
        const { stdout } = await run(
          process.execPath,
          [CLI, "launch", "--socket", pm.socket, "--library", LIBRARY, "--function", "readBack", "--name", "reader", "--shmem", "--wait"],
          { cwd: pm.dir },
        );
        const readerPid = Number(stdout.trim());
        assert.ok(Number.isInteger(readerPid) && readerPid > 0, `launch --wait prints the pid: ${stdout}`);
        const read = await eventOf(pm, "read", "reader");
        assert.equal(read.pid, readerPid);
        assert.deepEqual({ hits: read.hits, count: read.count, marker: read.marker, label: read.label }, written);

        // Without enableShmemAccess(): the clear error, as an ERROR line, and exit code 1.
        const trying = await eventOf(pm, "trying", "noacc");
        const error = await pm.waitForLog(/has no shared memory access/);
        assert.equal(error.level, "ERROR");
        assert.equal(error.pid, trying.pid);
        assert.equal(error.message, 'background worker "noacc": background worker "noacc" has no shared memory access: register it with enableShmemAccess()');
        await pm.waitForLog(exitLine("noacc", trying.pid, "exited with exit code 1"));
        assert.equal(pm.events("unexpected-success").length, 0);

        // (The stopped noacc's slot may have been reused by the reader, as PostgreSQL reuses slots.)
        const rows = new Map((await status(pm)).workers.map((row) => [row.name, row]));
        assert.equal(rows.get("holder")?.state, "running");
        assert.equal(rows.get("holder")?.pid, holder.pid);
        assert.equal(hookRuns(pm).length, 1, "the hook runs once at start");
      },
    );
  });

  for (const n of [2, 4]) {
    it(`${n} worker processes add 1,000,000 in total to a PgAtomic and to a counter under exclusive(): exact totals`, async () => {
      const total = 1_000_000;
      await withPostmaster(
        [
          ...Array.from({ length: n }, (_, i): ShmemTestWorker => ({ name: `count${i}`, function: "count", argument: total / n, extra: String(n) })),
          { name: "totals", function: "totals", extra: String(n), hook: true },
        ],
        async (pm) => {
          const counted = await pm.waitForEvents("counted", n);
          assert.equal(new Set(counted.map((e) => e.pid)).size, n, `${n} distinct processes`);
          const totals = await eventOf(pm, "totals", "totals");
          assert.equal(totals.adds, String(total));
          assert.equal(totals.count, String(total));
          assert.equal(totals.done, n);
          for (const e of counted) await pm.waitForLog(exitLine(String(e.name), e.pid, "exited with exit code 0"));
          console.log(`${n} workers: ${counted.map((e) => `${Math.round(e.ms as number)} ms`).join(", ")} for ${total / n} loops each`);
        },
      );
    });
  }

  it("a shared-memory worker killed by SIGKILL: the others are killed, the segment is re-created and re-initialised, restartable ones restart at once", async () => {
    await withPostmaster(
      [
        { name: "holder", function: "holder", hook: true, restartTimeMs: 60_000 },
        { name: "peer", function: "waiter", restartTimeMs: 60_000 },
        { name: "once", function: "waiter", restartTimeMs: null },
        { name: "plain", function: "plain", shmem: false, restartTimeMs: null },
      ],
      async (pm) => {
        const holder = await eventOf(pm, "holder", "holder");
        const peer = await eventOf(pm, "waiting", "peer");
        const once = await eventOf(pm, "waiting", "once");
        const plain = await eventOf(pm, "waiting", "plain");
        assert.deepEqual(holder.seen, INITIAL);
        // The peers may have started before or after the holder wrote; either way they saw a consistent state.
        await waitForHookRuns(pm, 1);
        assert.deepEqual(segments(pm.pid), [`bgworker.${pm.pid}.1`]);

        process.kill(holder.pid, "SIGKILL");

        const killed = await pm.waitForLog(exitLine("holder", holder.pid, KILLED));
        await pm.waitForLog(/^terminating any other active server processes that use shared memory$/);
        await pm.waitForLog(exitLine("peer", peer.pid, KILLED));
        await pm.waitForLog(exitLine("once", once.pid, KILLED));
        await pm.waitForLog(/^all shared-memory workers terminated; reinitializing shared memory$/);

        // The hook ran again, in the postmaster, on a fresh zeroed segment.
        const runs = await waitForHookRuns(pm, 2);
        assert.equal(runs[1]!.pid, pm.pid);
        assert.deepEqual(runs[1]!.found, ZEROED, "the re-created segment is fresh: nothing written before the crash survives");
        assert.deepEqual(runs[1]!.after, INITIAL);

        // Restartable shared-memory workers come back at once (their restart time is 60 s), with new pids.
        const holder2 = await eventOf(pm, "holder", "holder", 2);
        const peer2 = await eventOf(pm, "waiting", "peer", 2);
        // On the postmaster's timeline: the new holder spoke before its 60 s restart time since the crash was up.
        const spoke = pm.records.find((r) => r.worker?.pid === holder2.pid)!;
        const restartMs = Date.parse(spoke.time) - Date.parse(killed.time);
        assert.ok(restartMs < 60_000, `restarted at once, not after the 60 s restart time (took ${restartMs} ms)`);
        assert.notEqual(holder2.pid, holder.pid);
        assert.notEqual(peer2.pid, peer.pid);
        assert.deepEqual(holder2.seen, INITIAL, "a value written before the crash reads as the startup hook's value after it");
        // The restarted peer read the new segment: the hook's label, or the restarted holder's, never the old holder's.
        assert.ok([INITIAL_LABEL, `written by ${holder2.pid}`].includes(peer2.label as string), `peer read ${String(peer2.label)}`);
        for (const pid of [holder.pid, peer.pid, once.pid]) assert.equal(alive(pid), false, `old shared-memory worker ${pid} is gone`);

        // The old segment is gone; the new one is the next generation.
        assert.deepEqual(segments(pm.pid), [`bgworker.${pm.pid}.2`]);

        const rows = new Map((await status(pm)).workers.map((row) => [row.name, row]));
        // The never-restart one is forgotten.
        assert.equal(rows.get("once")?.state, "stopped");
        assert.equal(rows.get("once")?.pid, null);
        assert.equal(pm.events("waiting").filter((e) => e.name === "once").length, 1, "a never-restart worker is not started again");
        assert.equal(rows.get("holder")?.pid, holder2.pid);
        assert.equal(rows.get("holder")?.lastExit?.signal, "SIGKILL");
        assert.equal(rows.get("peer")?.pid, peer2.pid);
        // The worker without shared memory is untouched: same pid, still running, no exit logged.
        assert.equal(rows.get("plain")?.pid, plain.pid);
        assert.equal(rows.get("plain")?.state, "running");
        assert.ok(alive(plain.pid));
        assert.equal(pm.logs(new RegExp(`\\(PID ${plain.pid}\\)`)).length, 0, "no exit of the worker without shared memory");
        assert.equal(pm.events("waiting").filter((e) => e.name === "plain").length, 1);
        assert.equal(hookRuns(pm).length, 2, "the hook ran at start and after the crash-restart, nothing more");
      },
    );
  });

  it("a SIGKILLed postmaster leaves its segment in /dev/shm; the next postmaster start removes it", async () => {
    const first = await start([{ name: "holder", function: "holder", hook: true }]);
    let stale: string[] = [];
    let closed = false;
    try {
      await eventOf(first, "holder", "holder");
      stale = segments(first.pid);
      assert.deepEqual(stale, [`bgworker.${first.pid}.1`]);
      first.signal("SIGKILL");
      const exit = await first.exited;
      assert.equal(exit.signal, "SIGKILL");
      closed = true;
      await first.close(); // its workers notice the death and go (checked)
      assert.deepEqual(segments(first.pid), stale, "nothing could run in a SIGKILLed postmaster: its segment stays");

      await withPostmaster([{ name: "holder", function: "holder", hook: true }], async (second) => {
        const removed = await second.waitForLog(/^removed shared memory segment /);
        assert.equal(removed.message, `removed shared memory segment "/${stale[0]}" left by a postmaster that is gone`);
        assert.equal(removed.pid, second.pid);
        assert.equal(existsSync(join(SHM_DIR, stale[0]!)), false);
        assert.deepEqual(segments(first.pid), []);
        // The new postmaster's own segment works as usual.
        const holder = await eventOf(second, "holder", "holder");
        assert.deepEqual(holder.seen, INITIAL);
      });
    } finally {
      try {
        if (!closed) await first.close();
      } finally {
        removeSegments(first.pid);
      }
    }
  });
});
