/**
 * The worker_spi example (examples/worker_spi) against a real throwaway cluster, with a real postmaster
 * (`bgworker start ... --database URL`): the acceptance scenarios 1, 2, 3 and 7 of PostgreSQL's worker_spi
 * tests (see the reference), plus its settings' validation. One primary serves the whole file; every test
 * waits on outcomes, never for a fixed time, and every process and temp dir is cleaned up.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { BackgroundWorkerStatus, connect, type PostmasterClient } from "bgworker";
import { worker_spi_launch } from "../../examples/worker_spi/launch.js";
import type { LogRecord } from "../../src/log.js";
import { createTestCluster, type TestCluster } from "../helpers/cluster.js";
import { alive, CLI, ROOT, runNode, startPostmaster, waitGone, type RunningPostmaster, eventually } from "../helpers/postmaster.js";

const EXTENSION = join(ROOT, "examples", "worker_spi", "extension.ts");
const TRACED = join(ROOT, "test", "fixtures", "database", "traced-worker-spi.ts");

let cluster: TestCluster;

before(async () => {
  cluster = await createTestCluster();
});

after(async () => {
  await cluster?.stop();
});

async function query<R extends Record<string, unknown>>(sql: string, params: unknown[] = [], database = "postgres"): Promise<R[]> {
  const client = new pg.Client({ ...cluster.params, database });
  client.on("error", () => undefined);
  await client.connect();
  try {
    return (await client.query<R>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

/** Waits until schemaN.counted exists (the worker creates it right after logging "initialized"). */
async function tableOf(index: number, database = "postgres"): Promise<void> {
  await eventually(`schema${index}.counted to exist`, async () => {
    const [row] = await query<{ t: string | null }>("select to_regclass($1)::text as t", [`schema${index}.counted`], database);
    return row?.t === null || row?.t === undefined ? undefined : true;
  });
}

function printed(pm: RunningPostmaster, pattern: RegExp): LogRecord[] {
  return pm.records.filter((r) => r.stream === "stdout" && pattern.test(r.message));
}

/** The pid of worker_spi worker N, once it has printed its "initialized" line. */
async function initialized(pm: RunningPostmaster, index: number): Promise<number> {
  const pattern = new RegExp(`^worker_spi worker ${index} initialized with schema${index}\\.counted$`);
  const record = await pm.until(`worker_spi worker ${index} to initialise`, () => printed(pm, pattern)[0]);
  assert.equal(record.worker?.type, "worker_spi");
  assert.equal(record.worker?.name, `worker_spi worker ${index}`);
  return record.worker!.pid!;
}

function startWorkerSpi(env: Record<string, string>, extraArgs: string[] = []): Promise<RunningPostmaster> {
  return startPostmaster({ extensions: [EXTENSION], args: ["--database", cluster.url, ...extraArgs], env });
}

describe("worker_spi", () => {
  it("scenario 1: a dynamic launch (worker_spi_launch through connect()) returns a running worker that creates schemaN.counted", async () => {
    const pm = await startWorkerSpi({ WORKER_SPI_TOTAL_WORKERS: "1", WORKER_SPI_NAPTIME: "300" });
    let client: PostmasterClient | undefined;
    try {
      client = await connect(pm.socket);
      const worker = await worker_spi_launch(3);
      const pid = await worker.pid();
      assert.ok(Number.isInteger(pid) && pid > 0 && alive(pid), `worker_spi_launch gave a live pid (${pid})`);
      assert.equal(worker.notifyPid, process.pid, "the launching process is the notify pid, as in worker_spi_launch()");
      const row = (await client.status()).find((r) => r.handle === worker.handle);
      assert.ok(row !== undefined);
      assert.deepEqual(
        { name: row.name, type: row.type, pid: row.pid, state: row.state, kind: row.kind, spi: row.spi, startTime: row.startTime, restart: row.restartTimeMs },
        { name: "worker_spi worker 3", type: "worker_spi", pid, state: "running", kind: "dynamic", spi: true, startTime: "RecoveryFinished", restart: null },
      );

      assert.equal(await initialized(pm, 3), pid);
      await tableOf(3);
      const columns = await query<{ column_name: string; data_type: string }>(
        "select column_name, data_type from information_schema.columns where table_schema = 'schema3' and table_name = 'counted' order by ordinal_position",
      );
      assert.deepEqual(columns, [
        { column_name: "type", data_type: "text" },
        { column_name: "value", data_type: "integer" },
      ]);
      const [index] = await query<{ indexdef: string }>("select indexdef from pg_indexes where schemaname = 'schema3' and indexname = 'counted_unique_total'");
      assert.match(index?.indexdef ?? "", /^CREATE UNIQUE INDEX counted_unique_total ON schema3\.counted USING btree \(type\) WHERE \(type = 'total'::text\)$/);
      await assert.rejects(query("insert into schema3.counted values ('other', 1)"), /violates check constraint/);

      // A launch on the same index finds the schema there and leaves it alone (no error, no duplicate).
      await worker.terminate().waitForShutdown();
      assert.equal(await worker.status(), BackgroundWorkerStatus.Stopped);
      assert.ok((await waitGone([pid])).length === 0, "the terminated worker is gone");
      const again = await worker_spi_launch(3);
      const pid2 = await again.pid();
      await pm.until("the second worker_spi worker 3", () => printed(pm, /^worker_spi worker 3 initialized/).find((r) => r.worker?.pid === pid2));
      await query("insert into schema3.counted values ('total', 5), ('delta', 2)");
      process.kill(pid2, "SIGHUP");
      await pm.until("the second worker 3 to fold", () => printed(pm, /^count in schema3\.counted is now 7$/)[0]);
      await again.terminate().waitForShutdown();
      assert.equal(pm.logs(/^background worker "worker_spi" \(PID \d+\) exited with exit code 1$/).length >= 2, true);
    } finally {
      await client?.close();
      await pm.close();
    }
  });

  it("scenario 2: SIGHUP wakes the worker at once (naptime 300 s); it folds the deltas and the table reads total|1", async (t) => {
    const pm = await startWorkerSpi({ WORKER_SPI_TOTAL_WORKERS: "2", WORKER_SPI_NAPTIME: "300" });
    try {
      const [pid1] = await Promise.all([initialized(pm, 1), initialized(pm, 2)]);
      await Promise.all([tableOf(1), tableOf(2)]);
      await query("insert into schema1.counted values ('total', 0), ('delta', 1)");
      await query("insert into schema2.counted values ('total', 0), ('delta', 5)");

      const sent = Date.now();
      process.kill(pid1, "SIGHUP");
      const folded = await pm.until("worker 1 to fold its delta", () => printed(pm, /^count in schema1\.counted is now 1$/)[0]);
      const latency = Date.parse(folded.time) - sent;
      t.diagnostic(`SIGHUP -> "count in schema1.counted is now 1" logged after ${latency} ms (naptime 300 s)`);
      assert.equal(folded.worker?.pid, pid1);
      // Only the SIGHUP can explain the fold: on the postmaster's timeline it follows the worker's SIGHUP line,
      // and comes before a naptime of 300 s since the worker initialised could have ended.
      const hup = printed(pm, /^worker_spi worker 1 got SIGHUP: configuration reloaded \(naptime 300 s\)$/);
      assert.equal(hup.length, 1);
      assert.ok(pm.records.indexOf(hup[0]!) < pm.records.indexOf(folded), "the fold follows the SIGHUP line");
      const init = printed(pm, /^worker_spi worker 1 initialized with schema1\.counted$/)[0]!;
      const sinceInit = Date.parse(folded.time) - Date.parse(init.time);
      assert.ok(sinceInit < 300_000, `the fold came ${sinceInit} ms after the worker initialised: its naptime could explain it`);

      assert.deepEqual(await query("select type, value from schema1.counted order by type"), [{ type: "total", value: 1 }]);
      // Worker 2 got no SIGHUP and sleeps for 300 s: its delta is still there.
      assert.deepEqual(await query("select type, value from schema2.counted order by type"), [
        { type: "delta", value: 5 },
        { type: "total", value: 0 },
      ]);
      assert.equal(printed(pm, /^count in schema2\.counted/).length, 0);
    } finally {
      await pm.close();
    }
  });

  it("scenario 2 through the postmaster: SIGHUP to it, then bgworker reload, reach every worker, which fold their deltas", async () => {
    const pm = await startWorkerSpi({ WORKER_SPI_TOTAL_WORKERS: "2", WORKER_SPI_NAPTIME: "300" });
    try {
      await Promise.all([initialized(pm, 1), initialized(pm, 2)]);
      await Promise.all([tableOf(1), tableOf(2)]);
      // The tables may be left by an earlier test on this cluster: start from empty ones.
      await query("delete from schema1.counted");
      await query("delete from schema2.counted");
      await query("insert into schema1.counted values ('total', 0), ('delta', 1)");
      await query("insert into schema2.counted values ('total', 0), ('delta', 5)");
      pm.signal("SIGHUP"); // as pg_ctl reload: the postmaster passes it on to every worker
      await pm.waitForLog(/^received SIGHUP, reloading configuration files$/);
      await pm.until("both workers to fold", () => (printed(pm, /^count in schema[12]\.counted is now (1|5)$/).length >= 2 ? true : undefined));
      await query("insert into schema1.counted values ('delta', 2)");
      const reload = await runNode([CLI, "reload", "--socket", pm.socket], { cwd: pm.dir });
      assert.equal(reload.code, 0, reload.stderr);
      await pm.until("worker 1 to fold again", () => printed(pm, /^count in schema1\.counted is now 3$/)[0]);
      assert.deepEqual(await query("select type, value from schema1.counted order by type"), [{ type: "total", value: 3 }]);
      assert.deepEqual(await query("select type, value from schema2.counted order by type"), [{ type: "total", value: 5 }]);
      assert.ok(alive(pm.pid), "the postmaster runs on");
      assert.equal(pm.logs(/\(PID \d+\) (exited|was terminated)/).length, 0, "no worker exited");
    } finally {
      await pm.close();
    }
  });

  it("scenario 3: static workers (count from the settings) appear in pg_stat_activity with their type and database", async () => {
    await query("drop database if exists spi_db");
    await query("create database spi_db");
    const pm = await startWorkerSpi({ WORKER_SPI_TOTAL_WORKERS: "3", WORKER_SPI_NAPTIME: "300", WORKER_SPI_DATABASE: "spi_db" });
    let client: PostmasterClient | undefined;
    try {
      await Promise.all([1, 2, 3].map((i) => initialized(pm, i)));
      await Promise.all([1, 2, 3].map((i) => tableOf(i, "spi_db")));
      const sessions = await eventually("three worker_spi sessions", async () => {
        const rows = await query<{ application_name: string; datname: string; usename: string; backend_type: string }>(
          "select application_name, datname, usename, backend_type from pg_stat_activity where application_name = 'worker_spi'",
        );
        return rows.length === 3 ? rows : undefined;
      });
      for (const row of sessions) {
        assert.deepEqual(row, { application_name: "worker_spi", datname: "spi_db", usename: "postgres", backend_type: "client backend" });
      }

      client = await connect(pm.socket);
      const rows = (await client.status()).map((r) => ({ name: r.name, type: r.type, kind: r.kind, state: r.state, spi: r.spi, start: r.startTime, restart: r.restartTimeMs }));
      assert.deepEqual(
        rows,
        [1, 2, 3].map((i) => ({ name: `worker_spi worker ${i}`, type: "worker_spi", kind: "static", state: "running", spi: true, start: "RecoveryFinished", restart: null })),
      );
    } finally {
      await client?.close();
      await pm.close();
      await query("drop database if exists spi_db with (force)");
    }
  });

  it("scenario 7: when the postmaster is killed, waitLatch returns false and every worker exits (no orphan)", async (t) => {
    const dir = mkdtempSync(join(tmpdir(), "bgw-events-"));
    const events = join(dir, "events.jsonl");
    const pm = await startPostmaster({
      args: ["--database", cluster.url],
      workers: [1, 2].map((i) => ({ name: `worker_spi worker ${i}`, type: "worker_spi", library: TRACED, function: "worker_spi_traced", spi: true, argument: i })),
      env: { BGW_TEST_EVENTS: events, WORKER_SPI_NAPTIME: "300" },
    });
    try {
      const pids = await Promise.all([initialized(pm, 1), initialized(pm, 2)]);
      await Promise.all([tableOf(1), tableOf(2)]);
      await eventually("both sessions in pg_stat_activity", async () => {
        const [row] = await query<{ n: number }>("select count(*)::int as n from pg_stat_activity where application_name = 'worker_spi'");
        return row?.n === 2 ? true : undefined;
      });

      const killedAt = Date.now();
      pm.signal("SIGKILL");
      await pm.exited;
      const left = await waitGone(pids, 5_000);
      assert.deepEqual(left, [], "no worker_spi worker outlives its postmaster");
      t.diagnostic(`both worker_spi workers gone ${Date.now() - killedAt} ms after SIGKILL of the postmaster`);

      const lines = readFileSync(events, "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
      const exits = lines.filter((l) => l.event === "exit");
      assert.deepEqual(exits.map((e) => e.pid).sort(), [...pids].sort(), "each worker exited through process.exit");
      for (const exit of exits) {
        assert.deepEqual(
          { code: exit.code, fromWorkerSpiMain: exit.fromWorkerSpiMain, postmasterAlive: exit.postmasterAlive },
          { code: 1, fromWorkerSpiMain: true, postmasterAlive: false },
          "worker_spi_main's loop ended (waitLatch returned false) and it called proc_exit(1)",
        );
        t.diagnostic(`worker ${String(exit.pid)} exited ${Number(exit.at) - killedAt} ms after the postmaster was killed`);
      }
      // Their database sessions end with them.
      await eventually("the worker_spi sessions to end", async () => {
        const [row] = await query<{ n: number }>("select count(*)::int as n from pg_stat_activity where application_name = 'worker_spi'");
        return row?.n === 0 ? true : undefined;
      });
    } finally {
      await pm.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses a bad setting at start with one line naming the variable, the value and the rule", async () => {
    for (const [env, message] of [
      [{ WORKER_SPI_TOTAL_WORKERS: "0" }, 'bgworker: worker_spi: WORKER_SPI_TOTAL_WORKERS "0" must be a whole number from 1 to 100'],
      [{ WORKER_SPI_NAPTIME: "10s" }, 'bgworker: worker_spi: WORKER_SPI_NAPTIME "10s" must be a whole number from 1 to 2147483647'],
      [{ WORKER_SPI_DATABASE: "x".repeat(64) }, `bgworker: worker_spi: WORKER_SPI_DATABASE "${"x".repeat(64)}" must be a database name of at most 63 bytes`],
    ] as const) {
      const pm = await startPostmaster({ extensions: [EXTENSION], args: ["--no-database"], env, ready: false });
      try {
        assert.deepEqual(await pm.exited, { code: 1, signal: null });
        assert.deepEqual(pm.stderrText, [message]);
        assert.ok(!pm.stdout.includes("ready"));
      } finally {
        await pm.close();
      }
    }
  });
});
