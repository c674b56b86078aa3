/**
 * Database faults, as SPEC §6 describes them: the managed server restarted, stopped (fast, immediate) or
 * killed behind bgworker's back, every worker session ended with pg_terminate_backend, and a standby
 * promoted. Each runs against a PostgreSQL cluster of its own; the kill and pg_terminate_backend cases also
 * run in the bounded form.
 */
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import pg from "pg";
import { connect } from "../../../src/control/client.js";
import { Cluster } from "../../../src/database/cluster.js";
import { runAs } from "../../../src/database/owner.js";
import { createStandby, createTestCluster } from "../../helpers/cluster.js";
import { PATIENCE_MS, type RunningPostmaster } from "../../helpers/postmaster.js";
import { join, startFaultPostmaster } from "../common.js";
import type { FaultWorker } from "../fixtures/extension.js";
import { Expectations, sleep, type FaultCase, type Outcome } from "../harness.js";

const SPI_WORKERS: FaultWorker[] = [
  { name: "spi-0", function: "spiIdle", spi: true, restartTimeMs: 500 },
  { name: "spi-1", function: "spiIdle", spi: true, restartTimeMs: 500 },
  { name: "steady", function: "steady" },
];

function spiStarts(pm: RunningPostmaster): { pid: number; backend: number; at: number }[] {
  return pm.events("started").filter((e) => typeof e.backend === "number").map((e) => ({ pid: e.pid, backend: Number(e.backend), at: Number(e.at) }));
}

function steadyPid(pm: RunningPostmaster): number | undefined {
  return pm.records.find((r) => r.worker?.name === "steady" && r.worker.pid !== undefined)?.worker?.pid;
}

type Provoke = (context: { cluster: Cluster; pgdata: string; pm: RunningPostmaster; port: number }) => Promise<void>;

/**
 * A managed server (`--pgdata`) with two SPI workers and a steady worker; `provoke` does something to the
 * server; then both SPI workers must come back (new pids, new sessions), the steady worker undisturbed.
 */
async function managedFault(provoke: Provoke, extra: (e: Expectations, pm: RunningPostmaster, cluster: Cluster, serverBefore: number) => Promise<void> = async () => undefined): Promise<Outcome> {
  const e = new Expectations();
  const dir = await mkdtemp(join(tmpdir(), "bgw-fault-db-"));
  await chmod(dir, 0o755); // the server's user must reach its data directory
  const pgdata = join(dir, "pgdata");
  let pm: RunningPostmaster | undefined;
  try {
    pm = await startFaultPostmaster(SPI_WORKERS, ["--pgdata", pgdata]);
    await pm.until("both SPI workers connected", () => (spiStarts(pm!).length >= 2 ? true : undefined), 60_000);
    const cluster = await Cluster.at(pgdata);
    const serverBefore = (await cluster.runningPid()) ?? 0;
    const port = (await cluster.savedPort()) ?? 0;
    const steady = steadyPid(pm);
    const began = Date.now();
    await provoke({ cluster, pgdata, pm, port });
    try {
      await pm.until("both SPI workers back", () => (spiStarts(pm!).filter((s) => s.at >= began).length >= 2 ? true : undefined), PATIENCE_MS * 2);
      const back = spiStarts(pm).filter((s) => s.at >= began);
      e.figure("SPI workers back after", `${Math.max(...back.slice(0, 2).map((s) => s.at - began))} ms`);
    } catch {
      const client = await connect(pm.socket);
      const report = await client.statusReport();
      await client.close();
      e.expect(false, `the SPI workers did not come back; phase ${report.postmaster.phase}, server ${String(await cluster.runningPid())}`);
    }
    await extra(e, pm, cluster, serverBefore);
    e.expect(steadyPid(pm) === steady && pm.logs(/"steady" \(PID \d+\) (exited|was terminated)/).length === 0, "the worker without SPI was disturbed");
  } catch (error) {
    e.expect(false, `aborted: ${error instanceof Error ? error.message.split("\n")[0] : String(error)}`);
  } finally {
    await pm?.close().catch((error: Error) => e.expect(false, error.message));
    const cluster = await Cluster.at(pgdata).catch(() => undefined);
    if (cluster !== undefined && (await cluster.runningPid()) !== null) await cluster.stop("immediate").catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
  return e.outcome();
}

/** The server came back by bgworker's doing: a new server pid, and a log line about it. */
async function serverStartedAgain(e: Expectations, _pm: RunningPostmaster, cluster: Cluster, before: number): Promise<void> {
  const now = await cluster.runningPid();
  e.expect(now !== null && now !== before, `the managed server was not started again (pid ${String(now)})`);
  e.figure("server", now !== null && now !== before ? "started again by the postmaster" : "not started again");
}

async function stopByHand(mode: "fast" | "immediate"): Promise<Outcome> {
  return managedFault(async ({ cluster }) => cluster.stop(mode), serverStartedAgain);
}

export const serverRestartedByHand: FaultCase = {
  id: "db-restart-by-hand",
  group: "database",
  title: "managed server restarted by hand (pg_ctl restart -m fast)",
  bounded: false,
  run: () =>
    managedFault(async ({ cluster, pgdata }) => {
      await runAs(cluster.owner, cluster.program("pg_ctl"), ["restart", "-w", "-m", "fast", "-D", pgdata, "-l", cluster.logFile], { timeoutMs: 70_000 });
    }),
};

export const serverStoppedFast: FaultCase = {
  id: "db-stop-fast",
  group: "database",
  title: "managed server stopped behind bgworker's back (pg_ctl stop -m fast)",
  bounded: false,
  run: () => stopByHand("fast"),
};

export const serverStoppedImmediate: FaultCase = {
  id: "db-stop-immediate",
  group: "database",
  title: "managed server stopped behind bgworker's back (pg_ctl stop -m immediate)",
  bounded: false,
  run: () => stopByHand("immediate"),
};

export const serverKilled: FaultCase = {
  id: "db-kill",
  group: "database",
  title: "managed server killed (SIGKILL to its postmaster)",
  bounded: true,
  run: () =>
    managedFault(async ({ cluster }) => {
      const pid = await cluster.runningPid();
      if (pid !== null) process.kill(pid, "SIGKILL");
    }, serverStartedAgain),
};

export const terminateBackends: FaultCase = {
  id: "db-terminate-backend",
  group: "database",
  title: "pg_terminate_backend() on every worker session",
  bounded: true,
  run: async () => {
    const e = new Expectations();
    const cluster = await createTestCluster();
    let pm: RunningPostmaster | undefined;
    try {
      pm = await startFaultPostmaster(SPI_WORKERS, ["--database", cluster.url]);
      await pm.until("both SPI workers connected", () => (spiStarts(pm!).length >= 2 ? true : undefined), 60_000);
      const sessions = spiStarts(pm);
      const client = new pg.Client(cluster.params);
      await client.connect();
      const { rows } = await client.query<{ pg_terminate_backend: boolean }>(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name IN ('spi-0', 'spi-1')",
      );
      await client.end();
      e.expect(rows.length === 2, `${rows.length} worker sessions in pg_stat_activity by application_name`);
      // Each worker attached SIGTERM: the flag is set, waitLatch returns false, the loop ends (then it exits 1).
      try {
        const ended = await pm.waitForEvents("loop-ended", 2);
        e.expect(sessions.every((s) => ended.some((x) => x.pid === s.pid)), "a worker whose session was terminated did not see SIGTERM");
        e.expect(ended.every((x) => x.sigterm === true), "the SIGTERM flag was not set");
        e.figure("workers", "saw SIGTERM through their latch");
      } catch {
        const exits = pm.logs(/\(PID \d+\) (exited|was terminated)/).map((r) => r.message);
        e.expect(false, `the workers did not act as on SIGTERM: ${exits.join("; ") || "no exit"}`);
      }
    } catch (error) {
      e.expect(false, `aborted: ${error instanceof Error ? error.message.split("\n")[0] : String(error)}`);
    } finally {
      await pm?.close().catch((error: Error) => e.expect(false, error.message));
      await cluster.stop();
    }
    return e.outcome();
  },
};

export const standbyPromoted: FaultCase = {
  id: "db-promote",
  group: "database",
  title: "hot standby promoted: RecoveryFinished SPI workers start",
  bounded: false,
  run: async () => {
    const e = new Expectations();
    const primary = await createTestCluster();
    let standby: Awaited<ReturnType<typeof createStandby>> | undefined;
    let pm: RunningPostmaster | undefined;
    try {
      standby = await createStandby(primary, { hotStandby: true });
      pm = await startFaultPostmaster([{ name: "spi-0", function: "spiIdle", spi: true, restartTimeMs: 500 }, { name: "steady", function: "steady" }], ["--database", standby.url]);
      const client = await connect(pm.socket);
      const phase = async (): Promise<string> => (await client.statusReport()).postmaster.phase;
      const deadline = Date.now() + 60_000;
      while ((await phase()) !== "consistent" && Date.now() < deadline) await sleep(50);
      e.expect((await phase()) === "consistent", `phase ${await phase()} on a hot standby`);
      // The postmaster decides which workers start in the step that enters the phase: once the status shows
      // the phase, the RecoveryFinished worker's row shows that decision, and no window of time is needed.
      const waiting = (await client.status()).find((r) => r.name === "spi-0");
      e.expect(waiting?.state === "waiting" && waiting.pid === null, `a RecoveryFinished worker on a standby: ${JSON.stringify(waiting)}`);
      e.expect(spiStarts(pm).length === 0, "a RecoveryFinished worker started on a standby");
      const promoted = Date.now();
      await standby.promote();
      await pm.until("the SPI worker started", () => (spiStarts(pm!).length >= 1 ? true : undefined));
      e.figure("SPI worker started after promote", `${spiStarts(pm)[0]!.at - promoted} ms (pg_ctl promote -w included)`);
      await client.close();
    } catch (error) {
      e.expect(false, `aborted: ${error instanceof Error ? error.message.split("\n")[0] : String(error)}`);
    } finally {
      await pm?.close().catch((error: Error) => e.expect(false, error.message));
      await standby?.stop();
      await primary.stop();
    }
    return e.outcome();
  },
};

export const DATABASE_CASES: readonly FaultCase[] = [
  serverRestartedByHand,
  serverStoppedFast,
  serverStoppedImmediate,
  serverKilled,
  terminateBackends,
  standbyPromoted,
];
