/**
 * On the managed server of a postmaster (`--pgdata`): PostgreSQL launching its own dynamic background worker
 * (a parallel worker of a parallel-forced query, against the same query without parallelism); an SPI worker
 * from launch until its first query is answered, with the session its spare opened ahead of time and with a
 * fresh connection (another database); and SPI's overhead over raw `pg` and postgres.js, each driver both as
 * SPI would use it (SQL text and parameters, nothing prepared) and at its fastest (a named, prepared statement).
 */
import { execFile } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import type { Context } from "../lib/context.js";
import { CliPostmaster } from "../lib/postmaster.js";
import { appendLine, REPO, reportLines } from "../lib/project.js";
import { progress } from "../lib/report.js";
import { median, now, sleep, until } from "../lib/stats.js";

const run = promisify(execFile);
const SQL_PEER = join(REPO, "bench", "peers", "sql.mjs");
const SETTLE_MS = 500;

export interface DatabaseResults {
  readonly postgresVersion: string;
  /** Parallel-forced query time minus the serial query's median: PostgreSQL's worker launch to first tuple. */
  readonly parallelWorkerMs: number[];
  readonly serialQueryMs: number[];
  readonly parallelQueryMs: number[];
  readonly spiFirstPreopenedMs: number[];
  readonly spiFirstFreshMs: number[];
  readonly overhead: Record<OverheadDriver, { selectsMs: number[]; transactionsMs: number[] }>;
}

/** SPI, and the drivers of peers/sql.mjs (whose names they take in kebab case). */
export const PEER_DRIVERS = ["pg", "pgPrepared", "postgres", "postgresUnsafe"] as const;
export type OverheadDriver = "spi" | (typeof PEER_DRIVERS)[number];
const kebab = (name: string): string => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

export async function withManagedPostmaster<T>(ctx: Context, use: (pm: CliPostmaster, params: pg.ClientConfig) => Promise<T>): Promise<T> {
  // The server runs as the postgres user: its data directory's parent must be reachable by it.
  const root = mkdtempSync(join(tmpdir(), "bgw-bench-pg-"));
  chmodSync(root, 0o755);
  const pm = await CliPostmaster.start(ctx.project, [ctx.libraries.extension], ["--pgdata", join(root, "pgdata"), "--max-worker-processes", "32"]);
  try {
    const params = { host: "127.0.0.1", port: pm.databasePort(), user: "postgres", database: "postgres" };
    return await use(pm, params);
  } finally {
    await pm.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

async function timed(client: pg.Client, sql: string): Promise<number> {
  const t0 = now();
  await client.query(sql);
  return now() - t0;
}

export async function measureDatabase(ctx: Context): Promise<DatabaseResults> {
  return withManagedPostmaster(ctx, async (pm, params) => {
    const admin = new pg.Client(params);
    await until("the managed server", async () => admin.connect().then(() => true, () => undefined), 60_000, 200);
    const version = String((await admin.query("SHOW server_version")).rows[0].server_version);
    await admin.query("CREATE TABLE bench_tx (v int)");
    await admin.query("CREATE TABLE bench_par AS SELECT generate_series(1, 1000) AS i");
    await admin.query("ANALYZE bench_par");
    await admin.query("CREATE DATABASE bench_other");

    // PostgreSQL's dynamic background worker: the same query, serial and with one forced parallel worker.
    const serial = new pg.Client(params);
    const parallel = new pg.Client(params);
    await serial.connect();
    await parallel.connect();
    await serial.query("SET max_parallel_workers_per_gather = 0");
    const major = Number(version.split(".")[0]);
    await parallel.query(`SET ${major >= 16 ? "debug_parallel_query" : "force_parallel_mode"} = on`);
    for (const setting of ["parallel_setup_cost = 0", "parallel_tuple_cost = 0", "min_parallel_table_scan_size = 0", "max_parallel_workers_per_gather = 1"]) {
      await parallel.query(`SET ${setting}`);
    }
    const plan = (await parallel.query("EXPLAIN (ANALYZE, COSTS OFF) SELECT count(*) FROM bench_par")).rows.map((row) => row["QUERY PLAN"]).join("\n");
    if (!/Workers Launched: 1/.test(plan)) throw new Error(`bench: the parallel query launched no worker:\n${plan}`);
    const serialQueryMs: number[] = [];
    const parallelQueryMs: number[] = [];
    for (let i = 0; i < ctx.sizes.parallelQueries + 3; i++) {
      const s = await timed(serial, "SELECT count(*) FROM bench_par");
      const p = await timed(parallel, "SELECT count(*) FROM bench_par");
      if (i >= 3) {
        serialQueryMs.push(s);
        parallelQueryMs.push(p);
      }
      await sleep(20);
    }
    const base = median(serialQueryMs);
    const parallelWorkerMs = parallelQueryMs.map((ms) => ms - base);
    await serial.end();
    await parallel.end();
    progress("database: PostgreSQL's parallel worker measured");

    // An SPI worker, launch until its first query is answered.
    const client = await ctx.bgw.connect(pm.socket);
    const spiFirst = async (fn: string): Promise<number> => {
      const file = ctx.project.reportFile();
      const builder = new ctx.bgw.BackgroundWorkerBuilder(`bench ${fn}`).setLibrary(ctx.libraries.workers).setFunction(fn).enableSpiAccess().setExtra(file);
      const t0 = now();
      const worker = await client.loadDynamic(builder);
      const answered = await until("the first answer", () => {
        const line = reportLines(file).find((l) => l.startsWith("answered "));
        return line === undefined ? undefined : Number(line.slice(9));
      });
      await worker.waitForShutdown();
      return answered - t0;
    };
    const spiFirstPreopenedMs: number[] = [];
    const spiFirstFreshMs: number[] = [];
    try {
      // The first SPI worker tells the pool that SPI is in use: from then on spares open a session ahead of time.
      await spiFirst("spiFirst");
      for (let i = 0; i < ctx.sizes.spiLaunches; i++) {
        await sleep(SETTLE_MS);
        await pm.sparesWarm();
        spiFirstPreopenedMs.push(await spiFirst("spiFirst"));
        await sleep(SETTLE_MS);
        await pm.sparesWarm();
        spiFirstFreshMs.push(await spiFirst("spiFirstOther"));
      }
      progress("database: SPI first query measured");

      // SPI's overhead: the same statements through the worker's session, raw pg and postgres.js.
      const overhead = Object.fromEntries(["spi", ...PEER_DRIVERS].map((name) => [name, { selectsMs: [], transactionsMs: [] }])) as unknown as DatabaseResults["overhead"];
      const rounds = ctx.sizes.overheadRounds;
      for (let round = 0; round < rounds; round++) {
        const file = ctx.project.reportFile();
        appendLine(file, `pause ${ctx.sizes.overheadPauseMs}`);
        const builder = new ctx.bgw.BackgroundWorkerBuilder("bench spi overhead").setLibrary(ctx.libraries.workers).setFunction("spiOverhead").enableSpiAccess().setExtra(file).setArgument(ctx.sizes.selects);
        await (await client.loadDynamic(builder)).waitForShutdown();
        const spi = JSON.parse(reportLines(file).find((line) => line.startsWith("{")) ?? "{}") as { selectsMs: number; transactionsMs: number };
        overhead.spi.selectsMs.push(spi.selectsMs);
        overhead.spi.transactionsMs.push(spi.transactionsMs);
        for (const driver of PEER_DRIVERS) {
          const env: NodeJS.ProcessEnv = { ...process.env, BENCH_PAUSE: String(ctx.sizes.overheadPauseMs) };
          delete env.NODE_OPTIONS;
          const { stdout } = await run(process.execPath, [SQL_PEER, kebab(driver), "127.0.0.1", String(params.port), "postgres", "postgres", String(ctx.sizes.selects)], { env });
          const peer = JSON.parse(stdout.trim()) as { selectsMs: number; transactionsMs: number };
          overhead[driver].selectsMs.push(peer.selectsMs);
          overhead[driver].transactionsMs.push(peer.transactionsMs);
        }
        progress(`database: SPI overhead round ${round + 1}/${rounds}`);
      }
      await admin.end();
      return { postgresVersion: version, parallelWorkerMs, serialQueryMs, parallelQueryMs, spiFirstPreopenedMs, spiFirstFreshMs, overhead };
    } finally {
      await client.close();
    }
  });
}
