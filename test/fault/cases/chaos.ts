/**
 * Chaos for a bounded time: random SIGKILL/SIGTERM/SIGSEGV/SIGABRT from outside, process.exit(n), throws,
 * unhandled rejections and blocked event loops, against "victim" workers, while counting workers do
 * shared-memory and SPI work. Afterwards: restart counts as the rules say, shared counters and table rows
 * exact, the postmaster's RSS and file descriptors flat, and no process left once it stops.
 */
import { writeFileSync } from "node:fs";
import pg from "pg";
import { BackgroundWorkerBuilder } from "../../../src/index.js";
import { IGNORED_SIGNALS } from "../../../src/runtime/signals.js";
import { connect, type PostmasterClient } from "../../../src/control/client.js";
import { createTestCluster, type TestCluster } from "../../helpers/cluster.js";
import { PATIENCE_MS, type RunningPostmaster } from "../../helpers/postmaster.js";
import { exitsOf, FAULT_WORKERS, join, percentile, startFaultPostmaster, startTimes } from "../common.js";
import type { FaultWorker } from "../fixtures/extension.js";
import type { SelfFault } from "../fixtures/workers.js";
import type { WorkerStatusRow } from "../../../src/status.js";
import { Expectations, footprint, Rng, sleep, type FaultCase, type FaultScale } from "../harness.js";

const SIGNALS = ["SIGKILL", "SIGTERM", "SIGSEGV", "SIGABRT"] as const;
type Fault = (typeof SIGNALS)[number] | "exit" | "throw" | "reject" | "block";
const FAULTS: readonly Fault[] = [...SIGNALS, "exit", "throw", "reject", "block"];
/** A victim is hit only after this much of its run, so storm damping (fast failures < 1 s) stays out of it. */
const MIN_RUN_MS = 1_200;

function victims(scale: FaultScale): FaultWorker[] {
  const restartable = scale.name === "full" ? 5 : 3;
  const out: FaultWorker[] = [];
  for (let i = 0; i < restartable; i++) out.push({ name: `victim-r${i}`, function: "victim", restartTimeMs: 100 + 100 * i });
  out.push({ name: "victim-n0", function: "victim", restartTimeMs: null });
  // Restartable, but told to exit 0 once: done, so unregistered for good.
  out.push({ name: "victim-z0", function: "victim", restartTimeMs: 100 });
  return out;
}

async function run(scale: FaultScale, log: (line: string) => void): Promise<ReturnType<Expectations["outcome"]>> {
  const e = new Expectations();
  const rng = new Rng(scale.seed);
  let cluster: TestCluster | undefined;
  let pm: RunningPostmaster | undefined;
  let client: PostmasterClient | undefined;
  try {
    cluster = await createTestCluster();
    const setup = new pg.Client(cluster.params);
    await setup.connect();
    await setup.query("CREATE TABLE fault_rows (pid int NOT NULL)");
    await setup.end();

    const victimWorkers = victims(scale);
    const workers: FaultWorker[] = [
      ...victimWorkers,
      { name: "counter-0", function: "counter", shmem: true, hook: true, restartTimeMs: null },
      { name: "counter-1", function: "counter", shmem: true, restartTimeMs: null },
      { name: "spi-0", function: "spiCounter", spi: true, restartTimeMs: null },
      { name: "spi-1", function: "spiCounter", spi: true, restartTimeMs: null },
    ];
    const faultDir = (pm = await startFaultPostmaster(workers, ["--database", cluster.url, "--max-worker-processes", "16"], {})).dir;
    // The command files live in the postmaster's own directory, removed with it.
    const env = faultDir;
    client = await connect(pm.socket);
    await pm.waitForEvents("started", workers.length);
    await sleep(1_000);
    const before = footprint(pm.pid);

    const counts = new Map<Fault, number>();
    const statusMs: number[] = [];
    const deadline = Date.now() + scale.chaosSeconds * 1_000;
    const victimNames = new Set(victimWorkers.map((w) => w.name));
    // A pid already dealt a fatal fault is not hit again: one fault, one exit to account for.
    const doomed = new Set<number>();
    let doneSent = false;
    const postmasterSignals = new Map<string, number>();
    while (Date.now() < deadline) {
      await sleep(rng.int(30, 200));
      // Now and then, a signal without a shutdown meaning to the postmaster itself: it must disturb nothing.
      if (rng.next() < 0.1) {
        const signal = rng.pick(["SIGHUP", ...IGNORED_SIGNALS] as const);
        postmasterSignals.set(signal, (postmasterSignals.get(signal) ?? 0) + 1);
        process.kill(pm.pid, signal);
      }
      const asked = performance.now();
      const rows = await client.status();
      statusMs.push(performance.now() - asked);
      const started = startTimes(pm);
      const now = Date.now();
      const ready = rows.filter(
        (r) => victimNames.has(r.name) && r.state === "running" && r.pid !== null && !doomed.has(r.pid) && now - (started.get(r.pid) ?? now) >= MIN_RUN_MS,
      );
      const done = ready.find((r) => r.name === "victim-z0");
      const target: WorkerStatusRow | undefined = !doneSent && done !== undefined ? done : rng.pick(ready.filter((r) => r.name !== "victim-z0"));
      if (target === undefined) continue;
      const pid = target.pid!;
      const fault: Fault = target.name === "victim-z0" ? "exit" : rng.pick(FAULTS);
      counts.set(fault, (counts.get(fault) ?? 0) + 1);
      if (fault !== "block") doomed.add(pid);
      try {
        if ((SIGNALS as readonly string[]).includes(fault)) {
          process.kill(pid, fault as NodeJS.Signals);
        } else {
          const code = target.name === "victim-z0" ? 0 : rng.pick([1, 2, 3, 42]);
          doneSent ||= target.name === "victim-z0";
          const command: SelfFault =
            fault === "exit" ? { action: "exit", code } : fault === "block" ? { action: "block", ms: rng.int(200, 1_500) } : { action: fault as "throw" | "reject" };
          writeFileSync(join(env, `cmd-${pid}`), JSON.stringify(command));
          process.kill(pid, "SIGURG"); // sets its latch
        }
      } catch {
        // It died on its own a moment ago; the rules still apply to what the log says.
      }
    }
    const faults = [...counts.values()].reduce((a, b) => a + b, 0);
    e.figure("faults", `${faults} in ${scale.chaosSeconds} s (${FAULTS.map((f) => `${f} ${counts.get(f) ?? 0}`).join(", ")})`);
    e.figure("signals to the postmaster", [...postmasterSignals].map(([s, n]) => `${s} ${n}`).join(", ") || "none");
    log(`chaos: ${faults} faults`);

    // The rules, from what the log says happened to each victim.
    const expected = async (): Promise<string[]> => {
      const rows = await client!.status();
      const exits = exitsOf(pm!);
      const problems: string[] = [];
      const exited = new Set(exits.map((x) => x.pid));
      const pending = [...doomed].filter((pid) => !exited.has(pid));
      if (pending.length > 0) problems.push(`no exit logged for pid(s) ${pending.join(", ")}, dealt a fatal fault`);
      for (const worker of victimWorkers) {
        const mine = exits.filter((x) => x.name === worker.name);
        const row = rows.find((r) => r.name === worker.name);
        const done = mine.some((x) => x.code === 0) || (worker.restartTimeMs === null && mine.length > 0);
        if (done) {
          if (row !== undefined && row.state !== "stopped") problems.push(`${worker.name}: ${row.state} after an exit that unregisters it`);
          const last = mine.findIndex((x) => x.code === 0 || worker.restartTimeMs === null);
          if (mine.length > last + 1) problems.push(`${worker.name}: restarted after an exit that unregisters it`);
        } else if (row === undefined || row.state !== "running") {
          problems.push(`${worker.name}: ${row?.state ?? "missing"}, expected running`);
        } else if (row.restarts !== mine.length) {
          problems.push(`${worker.name}: ${row.restarts} restarts for ${mine.length} exits`);
        }
      }
      return problems;
    };
    let problems = await expected();
    const settleBy = Date.now() + PATIENCE_MS;
    while (problems.length > 0 && Date.now() < settleBy) {
      await sleep(100);
      problems = await expected();
    }
    for (const problem of problems) e.expect(false, problem);
    const exits = exitsOf(pm).filter((x) => victimNames.has(x.name));
    e.figure("victim exits", `${exits.length} (${doomed.size} fatal faults dealt)`);
    e.expect(exits.length === doomed.size, `${exits.length} victim exits logged for ${doomed.size} fatal faults`);
    e.figure("restart counts", problems.length === 0 ? "as the rules say" : `${problems.length} wrong`);
    e.figure("status p50 / p99 during chaos", `${percentile(statusMs, 50).toFixed(1)} / ${percentile(statusMs, 99).toFixed(1)} ms`);

    // Counting workers: stop them, then compare what they say they did with what is stored.
    const rows = await client.status();
    const counters = rows.filter((r) => r.name.startsWith("counter-") || r.name.startsWith("spi-"));
    for (const row of counters) {
      e.expect(row.state === "running" && row.restarts === 0, `${row.name}: ${row.state}, ${row.restarts} restarts: the chaos reached a bystander`);
      if (row.pid !== null) await client.terminate(row.pid);
    }
    const tallies = await pm.waitForEvents("tally", counters.length);
    const steps = tallies.reduce((sum, t) => sum + Number(t.steps ?? 0), 0);
    const committed = tallies.reduce((sum, t) => sum + Number(t.committed ?? 0), 0);
    const checker = await client.loadDynamic(new BackgroundWorkerBuilder("check").setLibrary(FAULT_WORKERS).setFunction("check").enableShmemAccess());
    await checker.waitForShutdown();
    const [check] = await pm.waitForEvents("check");
    e.expect(check?.hits === String(steps) && check.count === String(steps), `shared counters: atomic ${String(check?.hits)}, locked ${String(check?.count)}, steps ${steps}`);
    e.expect(check?.hooks === 1, `the startup hook ran ${String(check?.hooks)} times in this segment, expected 1 (no shared-memory crash)`);
    e.figure("shared-memory steps", `${steps} (atomic = locked = counted)`);
    const verify = new pg.Client(cluster.params);
    await verify.connect();
    const rowsStored = Number((await verify.query<{ n: string }>("SELECT count(*) AS n FROM fault_rows")).rows[0]!.n);
    await verify.end();
    e.expect(rowsStored === committed, `SPI: ${rowsStored} rows stored, ${committed} committed`);
    e.figure("SPI rows", `${committed} (stored = committed)`);

    const after = footprint(pm.pid);
    const rssGrowthMb = (after.rssKb - before.rssKb) / 1024;
    e.figure("postmaster RSS", `${(before.rssKb / 1024).toFixed(0)} -> ${(after.rssKb / 1024).toFixed(0)} MB`);
    e.figure("postmaster fds", `${before.fds} -> ${after.fds}`);
    e.expect(rssGrowthMb < 64, `postmaster RSS grew by ${rssGrowthMb.toFixed(1)} MB`);
    e.expect(after.fds <= before.fds + 4, `postmaster fds grew from ${before.fds} to ${after.fds}`);
    e.expect(pm.logs(/Debugger listening/).length === 0, "an inspector was opened");
  } catch (error) {
    e.expect(false, `aborted: ${error instanceof Error ? error.message.split("\n")[0] : String(error)}`);
  } finally {
    await client?.close().catch(() => undefined);
    if (pm !== undefined) {
      try {
        await pm.close();
        e.figure("left behind", "no process");
      } catch (error) {
        e.expect(false, error instanceof Error ? error.message : String(error));
      }
    }
    await cluster?.stop();
  }
  return e.outcome();
}

export const chaos: FaultCase = {
  id: "chaos",
  group: "chaos",
  title: "random kills, exits, throws and blocked loops while others do SPI and shared-memory work",
  bounded: true,
  run,
};
