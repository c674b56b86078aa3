/**
 * SIGHUP and `bgworker reload` never stop the postmaster; every exit it can catch (an uncaught exception or
 * unhandled rejection in the postmaster, a startup hook or _PG_init that throws) stops its workers and its
 * managed server, with a FATAL line and exit 1; after a SIGKILL the next start says everything it cleaned. One
 * managed cluster (`--pgdata`) serves every test in turn.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { Cluster, SUPERUSER } from "../../src/database/cluster.js";
import { FAULT_EXTENSION, startFaultPostmaster } from "../fault/common.js";
import type { FaultWorker } from "../fault/fixtures/extension.js";
import { alive, processesIn, runNode, CLI, waitGone, type RunningPostmaster } from "../helpers/postmaster.js";

let dir: string;
let pgdata: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "bgw-exits-"));
  await chmod(dir, 0o755); // the server runs as the postgres user, which must reach its data directory
  pgdata = join(dir, "pgdata");
});

after(async () => {
  const cluster = await Cluster.at(pgdata).catch(() => undefined);
  if (cluster !== undefined && (await cluster.runningPid()) !== null) await cluster.stop("immediate");
  await rm(dir, { recursive: true, force: true });
});

async function serverPid(): Promise<number | null> {
  return (await Cluster.at(pgdata)).runningPid();
}

/** Starts a postmaster on the shared cluster and waits until `count` workers have said "started". */
async function start(workers: FaultWorker[], env: NodeJS.ProcessEnv = {}, count = workers.length): Promise<RunningPostmaster> {
  const pm = await startFaultPostmaster(workers, ["--pgdata", pgdata], env);
  if (count > 0) await pm.waitForEvents("started", count);
  return pm;
}

/** The postmaster ended with exit 1 after a FATAL line matching `fatal`, leaving no worker and no server. */
async function endedCleanly(pm: RunningPostmaster, fatal: RegExp, workerPids: number[]): Promise<void> {
  assert.deepEqual(await pm.exited, { code: 1, signal: null });
  const line = pm.records.find((r) => r.level === "FATAL" && fatal.test(r.message));
  assert.ok(line !== undefined, `a FATAL line matching ${fatal}\n${pm.transcript()}`);
  assert.deepEqual(await waitGone(workerPids), [], "no worker outlives the postmaster");
  assert.deepEqual(processesIn(pm.dir), [], "no process is left in the postmaster's directory");
  assert.equal(await serverPid(), null, "the managed server was stopped");
}

const SPI_AND_SHMEM: FaultWorker[] = [
  { name: "counter", function: "counter", shmem: true, hook: true, restartTimeMs: 0 },
  { name: "spi", function: "spiIdle", spi: true, restartTimeMs: 0 },
];

describe("SIGHUP and bgworker reload", () => {
  it("forward SIGHUP to every worker, reload the managed server, and stop nothing", async () => {
    const pm = await start([
      { name: "steady", function: "steady" },
      { name: "plain", function: "victim" },
      { name: "spi", function: "spiIdle", spi: true },
    ]);
    try {
      const server = await serverPid();
      const port = await (await Cluster.at(pgdata)).savedPort();
      const client = new pg.Client({ host: "127.0.0.1", port: port!, user: SUPERUSER, database: "postgres" });
      await client.connect();
      await client.query("ALTER SYSTEM SET work_mem = '7MB'");
      await client.end();

      pm.signal("SIGHUP");
      await pm.waitForLog(/^received SIGHUP, reloading configuration files$/);
      const [hup] = await pm.waitForEvents("sighup", 1);
      assert.ok(hup !== undefined, "the worker that attached SIGHUP saw its flag");
      await pm.waitForLog(/^signaled the PostgreSQL server to reload its configuration files$/);
      const check = new pg.Client({ host: "127.0.0.1", port: port!, user: SUPERUSER, database: "postgres" });
      await check.connect();
      const { rows } = await check.query<{ work_mem: string }>("SHOW work_mem");
      await check.end();
      assert.equal(rows[0]?.work_mem, "7MB", "the managed server re-read postgresql.auto.conf");

      // The same through the control socket.
      const reload = await runNode([CLI, "reload", "--socket", pm.socket], { cwd: pm.dir });
      assert.equal(reload.code, 0, reload.stderr);
      assert.equal(reload.stdout, "postmaster signaled\n");
      await pm.waitForEvents("sighup", 2);
      assert.equal(pm.logs(/^received SIGHUP, reloading configuration files$/).length, 2);

      assert.ok(alive(pm.pid), "the postmaster runs on");
      assert.equal(await serverPid(), server, "the server was reloaded, not restarted");
      assert.equal(pm.logs(/\(PID \d+\) (exited|was terminated)/).length, 0, "no worker exited, attached or not");
    } finally {
      await pm.close();
    }
  });
});

describe("every exit the postmaster can catch stops its workers and its managed server", () => {
  it("an uncaught exception in the postmaster (an extension's timer)", async () => {
    const pm = await start(SPI_AND_SHMEM, { BGW_FAULT_TRIGGER: "uncaught" });
    try {
      const pids = [...pm.workerPids()];
      writeFileSync(join(pm.dir, "fault-trigger"), "");
      await endedCleanly(pm, /^uncaught exception in the postmaster: an extension's timer throws on purpose; terminating every worker/, pids);
    } finally {
      await pm.close();
    }
  });

  it("an unhandled rejection in the postmaster", async () => {
    const pm = await start(SPI_AND_SHMEM, { BGW_FAULT_TRIGGER: "reject" });
    try {
      const pids = [...pm.workerPids()];
      writeFileSync(join(pm.dir, "fault-trigger"), "");
      await endedCleanly(pm, /^unhandled rejection in the postmaster: an extension leaves a rejection unhandled on purpose/, pids);
    } finally {
      await pm.close();
    }
  });

  it("a shared memory startup hook that throws when a crash re-runs it", async () => {
    const pm = await start(SPI_AND_SHMEM, { BGW_FAULT_HOOK_THROWS: "1" });
    try {
      const pids = [...pm.workerPids()];
      const counter = pm.events("started").find((e) => typeof e.backend !== "number")!.pid;
      process.kill(counter, "SIGKILL"); // a crash of a shared-memory worker: the segment is re-created, the hook re-run
      await endedCleanly(pm, /^a shared memory startup hook failed: the fault suite's startup hook throws on purpose; shutting down$/, pids);
    } finally {
      await pm.close();
    }
  });

  it("a startup hook or _PG_init that throws at start: FATAL, exit 1, nothing left", async () => {
    for (const [env, fatal] of [
      [{ BGW_FAULT_HOOK_THROWS: "0" }, /startup hook failed: the fault suite's startup hook throws on purpose/],
      [{ BGW_FAULT_INIT_THROWS: "1" }, /_PG_init throws on purpose/],
    ] as const) {
      const cwd = await mkdtemp(join(tmpdir(), "bgw-exits-start-"));
      try {
        const run = await runNode([CLI, "start", FAULT_EXTENSION, "--pgdata", pgdata, "--socket", join(cwd, "s.sock")], {
          cwd,
          env: { ...process.env, ...env, BGW_FAULT_WORKERS: JSON.stringify(SPI_AND_SHMEM) },
        });
        assert.equal(run.code, 1, run.stderr);
        assert.equal(run.stdout, "", "never ready");
        assert.ok(run.stderr.split("\n").some((line) => / FATAL: {2}/.test(line) && fatal.test(line)), run.stderr);
        assert.match(run.stderr.trimEnd().split("\n").pop() ?? "", /^bgworker: /);
        assert.deepEqual(processesIn(cwd), [], "no process is left");
        assert.equal(await serverPid(), null, "no server was left running");
      } finally {
        await rm(cwd, { recursive: true, force: true });
      }
    }
  });
});

describe("after a SIGKILL of the postmaster", () => {
  it("the next start says everything it cleaned: the segment, the server and the socket", async () => {
    const socket = join(dir, "crash.sock");
    const args = ["--pgdata", pgdata, "--socket", socket];
    const first = await startFaultPostmaster(SPI_AND_SHMEM, args);
    await first.waitForEvents("started", SPI_AND_SHMEM.length);
    first.signal("SIGKILL");
    await first.exited;
    await first.close(); // its workers are gone within a second; the server, the segment and the socket stay
    assert.ok((await serverPid()) !== null, "the managed server outlived the killed postmaster");

    const second = await startFaultPostmaster(SPI_AND_SHMEM, args);
    try {
      await second.waitForLog(/^removed shared memory segment "[^"]+" left by a postmaster that is gone$/);
      await second.waitForLog(new RegExp(`^stopping the PostgreSQL server \\(pid \\d+\\) left running by postmaster ${first.pid}, which is gone$`));
      await second.waitForLog(new RegExp(`^removed stale control socket ${socket.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} left by a postmaster that is gone$`));
      await second.waitForEvents("started", SPI_AND_SHMEM.length);
    } finally {
      await second.close();
    }
  });
});

