/**
 * In-server mode (SPEC §9) beside its peers, all on one throwaway PostgreSQL cluster with the bgworker
 * extension preloaded (lib/inserver.ts), served over its Unix socket:
 *
 *   SQL      one TypeScript worker module (written into the user's project) runs `SELECT 1` and a 1,000-row
 *            select, each statement timed alone, in one transaction: in-server (a real background worker,
 *            `Spi` through the backend's SPI) and out-of-server (the same function, launched by a CLI
 *            postmaster serving this same server with `--database`); node-postgres runs the same statements
 *            over the socket (peers/inserver.mjs); and the server's own SPI without any client: a plpgsql
 *            loop of `EXECUTE 'SELECT 1'` (parsed and planned each time, as SPI_execute does for in-server
 *            SQL without parameters) and of `PERFORM 1` (a cached plan), timed per batch of 100 statements.
 *   launch   `SELECT bgworker.launch(..., wait => true)` until it returns (Started: the extension waits until
 *            the worker's function is entered) and until the function says it was entered (its own clock),
 *            against `SELECT autoprewarm_start_worker()` (pg_prewarm's C dynamic worker: the same
 *            RegisterDynamicBackgroundWorker + WaitForBackgroundWorkerStartup as worker_spi_launch(), which
 *            Debian does not ship) plus a bare `node -e` start (peers/inserver.mjs).
 *   latch    half a setLatch/waitLatch round trip between two in-server workers, and the out-of-server
 *            figure from measures/latch.ts on the same CLI postmaster.
 */
import { execFile } from "node:child_process";
import { chmodSync, existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { inServerSetup } from "../../test/helpers/in-server.js";
import type { Context } from "../lib/context.js";
import { InServerCluster, pgInstall } from "../lib/inserver.js";
import { CliPostmaster, childrenOf } from "../lib/postmaster.js";
import { CLI, REPO, reportLines } from "../lib/project.js";
import { addFact, addRow, progress } from "../lib/report.js";
import { now, round, sleep, summarize, until, type Summary } from "../lib/stats.js";
import { measureLatch } from "./latch.js";

const run = promisify(execFile);
const PEER = join(REPO, "bench", "peers", "inserver.mjs");

/** Samples of the group, by mode; every SQL figure is one statement, in µs (rows in ms). */
export interface InServerResults {
  /** Why the group did not run here (it then has no figures). */
  readonly skipped?: string;
  readonly postgresVersion?: string;
  readonly select1Us?: Record<"inServer" | "outOfServer" | "pg" | "plpgsqlExecute" | "plpgsqlPerform", number[]>;
  readonly rowsMs?: Record<"inServer" | "outOfServer" | "pg", number[]>;
  readonly launch?: {
    readonly returnedMs: number[];
    readonly enteredMs: number[];
    /** From the launch to the worker's Node process beginning (its performance.timeOrigin), and from then to its function. */
    readonly toNodeMs: number[];
    readonly nodeToEnteredMs: number[];
    readonly autoprewarmMs: number[];
    readonly bareNodeMs: number[];
    readonly bareToProcessMs: number[];
  };
  readonly latch?: { readonly inServerUs: number[]; readonly outOfServerUs: number[]; readonly futexUs: number[] };
}

interface GroupSizes {
  readonly selects: number;
  readonly rowSelects: number;
  readonly warmup: number;
  readonly rounds: number;
  readonly launches: number;
  readonly pauseMs: number;
}

const SIZES: Record<"full" | "quick", GroupSizes> = {
  full: { selects: 5000, rowSelects: 200, warmup: 500, rounds: 3, launches: 21, pauseMs: 2000 },
  quick: { selects: 1000, rowSelects: 30, warmup: 200, rounds: 1, launches: 5, pauseMs: 500 },
};

/** The server's settings: docs/in-server.md's, with pg_prewarm beside bgworker for the C launch peer. */
const CONF = (): string[] => [
  "shared_preload_libraries = 'bgworker,pg_prewarm'",
  `bgworker.package = '${REPO}'`,
  `bgworker.node = '${process.execPath}'`,
  "bgworker.database = 'postgres'",
  "max_worker_processes = 32",
  // The autoprewarm leader dumps only when it ends; the bench removes the dump so that a start loads nothing.
  "pg_prewarm.autoprewarm_interval = 0",
];

/**
 * The workers, TypeScript. Each takes a number: its report file in REPORTS, whose `.in` file (written by the
 * bench before the launch) holds its parameters. Out-of-server they run unchanged.
 */
function workerSource(reports: string): string {
  return `// The in-server group's workers (bench/measures/inserver.ts).
import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { BackgroundWorker, SignalWakeFlags, Spi, type Datum } from "bgworker";

const REPORTS: string = ${JSON.stringify(reports)};
const now = (): number => performance.timeOrigin + performance.now();
const out = (id: Datum, line: string): void => appendFileSync(REPORTS + "/" + String(id), line + "\\n");
const params = <T>(id: Datum): T => JSON.parse(readFileSync(REPORTS + "/" + String(id) + ".in", "utf8")) as T;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A launch: says when its function was entered and when its Node process began, then ends (exit 0: unregistered). */
export function entered(id: Datum): void {
  out(id, "entered " + now() + " " + performance.timeOrigin);
}

/** SELECT 1 and a 1,000-row select, each statement timed alone, in one transaction (as the peers run them). */
export async function sql(id: Datum): Promise<void> {
  const p = params<{ selects: number; rowSelects: number; warmup: number; pauseMs: number }>(id);
  await BackgroundWorker.connectWorkerToSpi();
  await BackgroundWorker.transaction(() => Spi.run("SELECT 1"));
  // The launch's own work (the Node child's boot, a spare's replacement out-of-server) passes first.
  await sleep(p.pauseMs);
  const select1Us: number[] = [];
  const rowsUs: number[] = [];
  const rowWarmup = Math.ceil(p.warmup / 10);
  await BackgroundWorker.transaction(async () => {
    for (let i = 0; i < p.warmup + p.selects; i++) {
      const t0 = performance.now();
      await Spi.getOne("SELECT 1");
      if (i >= p.warmup) select1Us.push((performance.now() - t0) * 1000);
    }
    for (let i = 0; i < rowWarmup + p.rowSelects; i++) {
      const t0 = performance.now();
      const rows = await Spi.select<{ i: number; s: string }>("SELECT i, s FROM bench_rows");
      if (rows.length !== 1000) throw new Error(rows.length + " rows, not 1000");
      if (i >= rowWarmup) rowsUs.push((performance.now() - t0) * 1000);
    }
  });
  out(id, JSON.stringify({ select1Us, rowsUs }));
}

/**
 * Latch ping-pong, the ponger: sets the pinger's latch at every wake-up. An in-server worker's pid is its
 * backend's, the parent of its Node process; the pinger writes its own to this worker's ".ping" file. Both
 * connect first: the backend finds the latch of a pid among the processes connected to a database.
 */
export async function ponger(id: Datum): Promise<void> {
  BackgroundWorker.attachSignalHandlers(SignalWakeFlags.SIGTERM);
  await BackgroundWorker.connectWorkerToSpi();
  const pingFile = REPORTS + "/" + String(id) + ".ping";
  let ping = 0;
  while (await BackgroundWorker.waitLatch(null)) {
    if (ping === 0 && existsSync(pingFile)) ping = Number(readFileSync(pingFile, "utf8"));
    if (ping !== 0) BackgroundWorker.setLatch(ping);
  }
}

export async function pinger(id: Datum): Promise<void> {
  BackgroundWorker.attachSignalHandlers(SignalWakeFlags.SIGTERM);
  const p = params<{ rounds: number; pong: number; pongId: number }>(id);
  await BackgroundWorker.connectWorkerToSpi();
  appendFileSync(REPORTS + "/" + String(p.pongId) + ".ping", String(process.ppid));
  const latchUs: number[] = [];
  for (let i = 0; i < p.rounds + 50; i++) {
    const t0 = performance.now();
    BackgroundWorker.setLatch(p.pong);
    if (!(await BackgroundWorker.waitLatch(5000))) throw new Error("terminated during the ping-pong");
    if (i >= 50) latchUs.push((performance.now() - t0) * 1000);
  }
  out(id, JSON.stringify({ latchUs }));
}
`;
}

const PLPGSQL_LOOP = `CREATE FUNCTION bench_spi_loop(batches int, per int, dynamic boolean) RETURNS float8[] LANGUAGE plpgsql AS $$
DECLARE
  result float8[] := '{}';
  t0 timestamptz;
BEGIN
  FOR b IN 1..batches LOOP
    t0 := clock_timestamp();
    IF dynamic THEN
      FOR i IN 1..per LOOP EXECUTE 'SELECT 1'; END LOOP;
    ELSE
      FOR i IN 1..per LOOP PERFORM 1; END LOOP;
    END IF;
    result := result || (extract(epoch FROM clock_timestamp() - t0) * 1e6 / per)::float8;
  END LOOP;
  RETURN result;
END $$`;

/** The bench's handle on the cluster: an admin session and the workers' reports. */
class Bench {
  private next = 1;
  constructor(
    readonly cluster: InServerCluster,
    readonly admin: pg.Client,
    readonly reports: string,
    readonly library: string,
  ) {}

  /** A fresh report number, its parameters written for the worker to read. */
  report(params: unknown = {}): number {
    const id = this.next++;
    writeFileSync(join(this.reports, `${id}.in`), JSON.stringify(params));
    chmodSync(join(this.reports, `${id}.in`), 0o644);
    return id;
  }

  lines(id: number): string[] {
    return reportLines(join(this.reports, String(id)));
  }

  /** `bgworker.launch(..., wait => true)`: the worker backend's pid, once the launch has waited for it to start. */
  async launch(fn: string, id: number, spi = true): Promise<number> {
    const { rows } = await this.admin.query<{ pid: number }>("SELECT bgworker.launch($1, $2, $3, 'bench', $4, $5) AS pid", [this.library, fn, `bench ${fn} ${id}`, id, spi]);
    const pid = rows[0]?.pid;
    if (typeof pid !== "number") throw new Error(`bench: bgworker.launch of ${fn} returned ${String(pid)}`);
    return pid;
  }

  /** The JSON line a worker reports when it is done. */
  async result<T>(id: number, what: string, timeoutMs = 300_000): Promise<T> {
    return until(what, () => {
      const line = this.lines(id).find((l) => l.startsWith("{"));
      return line === undefined ? undefined : (JSON.parse(line) as T);
    }, timeoutMs, 20).catch((error: unknown) => {
      throw new Error(`${error instanceof Error ? error.message : String(error)}\nserver log:\n${this.cluster.logTail()}`);
    });
  }
}

const gone = (pid: number): Promise<true> => until(`process ${pid} to end`, () => (existsSync(`/proc/${pid}`) ? undefined : true), 30_000, 5);

export async function measureInServer(ctx: Context): Promise<InServerResults> {
  const setup = inServerSetup({ prove: false });
  if (typeof setup === "string") return { skipped: setup };
  progress(`inserver: bgworker pg-install into ${setup.version}`);
  const failed = pgInstall(CLI, setup);
  if (failed !== null) return { skipped: failed };
  const sizes = SIZES[ctx.quick ? "quick" : "full"];
  const cluster = await InServerCluster.start(setup, { conf: CONF() });
  try {
    progress(`inserver: cluster on ${cluster.socketDir} port ${cluster.port}`);
    // The server's user reads the module from the user's project and writes its reports next to the cluster.
    chmodSync(ctx.project.dir, 0o755);
    const reports = cluster.writableDir("r");
    const library = ctx.project.write("inserver/workers.ts", workerSource(reports));
    const admin = new pg.Client({ host: cluster.socketDir, port: cluster.port, user: "postgres", database: "postgres" });
    await admin.connect();
    try {
      const version = String((await admin.query("SHOW server_version")).rows[0].server_version);
      for (const statement of [
        "CREATE EXTENSION bgworker",
        "CREATE EXTENSION pg_prewarm",
        "CREATE TABLE bench_rows AS SELECT g AS i, md5(g::text) AS s FROM generate_series(1, 1000) g",
        "ANALYZE bench_rows",
        PLPGSQL_LOOP,
      ]) {
        await admin.query(statement);
      }
      const bench = new Bench(cluster, admin, reports, library);
      const launch = await measureLaunches(bench, sizes);
      const pm = await CliPostmaster.start(ctx.project, [ctx.libraries.extension], ["--database", cluster.url(), "--max-worker-processes", "16"]);
      try {
        const { select1Us, rowsMs } = await measureSql(bench, ctx, pm, sizes);
        const latch = await measureLatches(bench, ctx, pm);
        return { postgresVersion: version, select1Us, rowsMs, launch, latch };
      } finally {
        await pm.stop();
      }
    } finally {
      await admin.end();
    }
  } finally {
    cluster.stopSync();
  }
}

/** bgworker.launch until it returns and until the function is entered; autoprewarm_start_worker(); a bare node start. */
async function measureLaunches(bench: Bench, sizes: GroupSizes): Promise<NonNullable<InServerResults["launch"]>> {
  const returnedMs: number[] = [];
  const enteredMs: number[] = [];
  const toNodeMs: number[] = [];
  const nodeToEnteredMs: number[] = [];
  // The first launch warms what every later one finds ready (the page cache, the TypeScript hooks' cache).
  for (let i = 0; i < sizes.launches + 1; i++) {
    const id = bench.report();
    const t0 = now();
    const pid = await bench.launch("entered", id, false);
    const t1 = now();
    const { at, origin } = await until("the launched worker's entry", () => {
      const line = bench.lines(id).find((l) => l.startsWith("entered "));
      if (line === undefined) return undefined;
      const [entered = Number.NaN, began = Number.NaN] = line.slice(8).split(" ").map(Number);
      return { at: entered, origin: began };
    });
    await gone(pid);
    if (i > 0) {
      returnedMs.push(t1 - t0);
      enteredMs.push(at - t0);
      toNodeMs.push(origin - t0);
      nodeToEnteredMs.push(at - origin);
    }
    await sleep(200);
  }
  progress("inserver: bgworker.launch measured");
  const autoprewarmMs = await measureAutoprewarm(bench, sizes);
  progress("inserver: autoprewarm_start_worker() measured");
  const { stdout } = await run(process.execPath, [PEER, "bare", String(sizes.launches)], { env: plainEnv() });
  const bare = JSON.parse(stdout.trim()) as { startMs: number[]; toProcessMs: number[] };
  progress("inserver: a bare node start measured");
  return { returnedMs, enteredMs, toNodeMs, nodeToEnteredMs, autoprewarmMs, bareNodeMs: bare.startMs, bareToProcessMs: bare.toProcessMs };
}

/** The autoprewarm leader among the postmaster's children (titled "postgres: autoprewarm leader"). */
function autoprewarmLeader(cluster: InServerCluster): number | undefined {
  const postmaster = cluster.postmasterPid();
  if (postmaster === undefined) return undefined;
  return childrenOf(postmaster).find((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("autoprewarm leader");
    } catch {
      return false;
    }
  });
}

/**
 * Ends the running leader (SIGTERM: it dumps and exits; it is not a backend pg_terminate_backend can signal)
 * and removes its dump, so the next start has nothing to load.
 */
async function stopLeader(bench: Bench): Promise<void> {
  const pid = autoprewarmLeader(bench.cluster);
  if (pid !== undefined) {
    process.kill(pid, "SIGTERM");
    await gone(pid);
  }
  rmSync(join(bench.cluster.data, "autoprewarm.blocks"), { force: true });
}

async function measureAutoprewarm(bench: Bench, sizes: GroupSizes): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < sizes.launches + 1; i++) {
    await stopLeader(bench);
    await sleep(200);
    const t0 = now();
    // Until the ended leader's exit is processed, its slot still says "already running": not a sample.
    const ok = await bench.admin.query("SELECT autoprewarm_start_worker()").then(() => true, () => false);
    const t1 = now();
    if (!ok) {
      i--;
      await sleep(100);
      continue;
    }
    if (i > 0) samples.push(t1 - t0);
  }
  await stopLeader(bench);
  return samples;
}

function plainEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.NODE_OPTIONS;
  return env;
}

/** Rounds of: the in-server worker, node-postgres, the plpgsql loops, the same worker out-of-server. */
async function measureSql(bench: Bench, ctx: Context, pm: CliPostmaster, sizes: GroupSizes): Promise<Pick<InServerResults, "select1Us" | "rowsMs">> {
  const select1Us = { inServer: [] as number[], outOfServer: [] as number[], pg: [] as number[], plpgsqlExecute: [] as number[], plpgsqlPerform: [] as number[] };
  const rowsMs = { inServer: [] as number[], outOfServer: [] as number[], pg: [] as number[] };
  const params = { selects: sizes.selects, rowSelects: sizes.rowSelects, warmup: sizes.warmup, pauseMs: sizes.pauseMs };
  type Samples = { select1Us: number[]; rowsUs: number[] };
  const add = (side: "inServer" | "outOfServer" | "pg", samples: Samples): void => {
    select1Us[side].push(...samples.select1Us);
    rowsMs[side].push(...samples.rowsUs.map((us) => us / 1000));
  };
  const client = await ctx.bgw.connect(pm.socket);
  try {
    for (let round = 0; round < sizes.rounds; round++) {
      const id = bench.report(params);
      const pid = await bench.launch("sql", id);
      add("inServer", await bench.result<Samples>(id, "the in-server SQL report"));
      await gone(pid);

      const { stdout } = await run(process.execPath, [PEER, "pg", bench.cluster.socketDir, String(bench.cluster.port), String(sizes.selects), String(sizes.rowSelects), String(sizes.warmup)], {
        env: { ...plainEnv(), BENCH_PAUSE: String(sizes.pauseMs) },
      });
      add("pg", JSON.parse(stdout.trim()) as Samples);

      const batches = Math.max(1, Math.round(sizes.selects / 100));
      for (const [dynamic, key] of [[true, "plpgsqlExecute"], [false, "plpgsqlPerform"]] as const) {
        await bench.admin.query("SELECT bench_spi_loop(10, 100, $1)", [dynamic]); // warm-up
        const { rows } = await bench.admin.query<{ us: number[] }>("SELECT bench_spi_loop($1, 100, $2) AS us", [batches, dynamic]);
        select1Us[key].push(...rows[0]!.us);
      }

      const outId = bench.report(params);
      const builder = new ctx.bgw.BackgroundWorkerBuilder(`bench sql ${outId}`).setLibrary(bench.library).setFunction("sql").enableSpiAccess().setArgument(outId);
      await (await client.loadDynamic(builder)).waitForShutdown();
      add("outOfServer", await bench.result<Samples>(outId, "the out-of-server SQL report"));
      progress(`inserver: SQL round ${round + 1}/${sizes.rounds}`);
    }
  } finally {
    await client.close();
  }
  return { select1Us, rowsMs };
}

/** The in-server ping-pong, then measures/latch.ts's own on the CLI postmaster. */
async function measureLatches(bench: Bench, ctx: Context, pm: CliPostmaster): Promise<NonNullable<InServerResults["latch"]>> {
  const pongId = bench.report();
  const pong = await bench.launch("ponger", pongId);
  const pingId = bench.report({ rounds: ctx.sizes.pingRounds, pong, pongId });
  await bench.launch("pinger", pingId);
  const { latchUs } = await bench.result<{ latchUs: number[] }>(pingId, "the in-server ping-pong report", 120_000);
  process.kill(pong, "SIGTERM");
  await gone(pong);
  progress("inserver: in-server latch measured");
  const outOfServer = await measureLatch(ctx, pm);
  progress("inserver: out-of-server latch measured");
  return { inServerUs: latchUs.map((us) => us / 2), outOfServerUs: outOfServer.latchUs, futexUs: outOfServer.futexUs };
}

/** A peer made of two measured parts (launch + a bare node start): their medians and p99s added. */
function composed(a: Summary, b: Summary): Summary {
  return { n: Math.min(a.n, b.n), p50: a.p50 + b.p50, p99: a.p99 + b.p99, min: a.min + b.min, max: a.max + b.max };
}

const fasterBy = (peer: Summary, ours: Summary): number => peer.p50 / ours.p50;

/** The group's rows (and, when it could not run, why, as a fact and a progress line). */
export function inServerRows(results: InServerResults): void {
  if (results.skipped !== undefined) {
    progress(`inserver: skipped: ${results.skipped}`);
    addFact("inserver", { skipped: results.skipped });
    return;
  }
  const group = "inserver";
  const { select1Us, rowsMs, launch, latch } = results;
  if (select1Us !== undefined) {
    const ours = summarize(select1Us.inServer);
    const spiLabel = "server-side SPI, plpgsql `EXECUTE 'SELECT 1'` (parse + plan each time), per statement in batches of 100";
    for (const [peerSamples, label] of [
      [select1Us.plpgsqlExecute, spiLabel],
      [select1Us.outOfServer, "bgworker out-of-server SPI, same worker function, same server"],
    ] as const) {
      const peer = summarize(peerSamples);
      const over = ours.p50 - peer.p50;
      addRow({ group, measure: "in-server SPI: `SELECT 1` round trip", unit: "us", bgworker: ours, peer, peerLabel: label, ratio: fasterBy(peer, ours), target: "<= the peer + 50 µs", met: over <= 50, note: `${over >= 0 ? "+" : ""}${over.toFixed(1)} µs at the median` });
    }
    const perform = summarize(select1Us.plpgsqlPerform);
    addRow({ group, measure: "in-server SPI: `SELECT 1` round trip", unit: "us", bgworker: ours, peer: perform, peerLabel: "server-side SPI, plpgsql `PERFORM 1` (cached plan), per statement in batches of 100", ratio: fasterBy(perform, ours) });
    const pgPeer = summarize(select1Us.pg);
    addRow({ group, measure: "in-server SPI: `SELECT 1` round trip", unit: "us", bgworker: ours, peer: pgPeer, peerLabel: "node-postgres over the Unix socket, same server", ratio: fasterBy(pgPeer, ours), target: "faster", met: fasterBy(pgPeer, ours) > 1 });
  }
  if (rowsMs !== undefined) {
    const ours = summarize(rowsMs.inServer);
    const pgPeer = summarize(rowsMs.pg);
    addRow({ group, measure: "in-server SPI: 1,000-row select (int, text), parsed", unit: "ms", bgworker: ours, peer: pgPeer, peerLabel: "node-postgres over the Unix socket, same server", ratio: fasterBy(pgPeer, ours), target: "<= 1.2x the peer", met: ours.p50 <= 1.2 * pgPeer.p50 });
    const out = summarize(rowsMs.outOfServer);
    addRow({ group, measure: "in-server SPI: 1,000-row select (int, text), parsed", unit: "ms", bgworker: ours, peer: out, peerLabel: "bgworker out-of-server SPI, same worker function, same server", ratio: fasterBy(out, ours) });
  }
  if (launch !== undefined) {
    const returned = summarize(launch.returnedMs);
    const entered = summarize(launch.enteredMs);
    const c = summarize(launch.autoprewarmMs);
    const bare = summarize(launch.bareNodeMs);
    // The peer is the issue's: worker_spi_launch() (here pg_prewarm's identical C launch) plus a bare node start.
    const peer = composed(c, bare);
    const label = "`autoprewarm_start_worker()` (a C dynamic worker, launched and waited for as worker_spi_launch() does) plus a bare `node -e` start: sum of medians, of p99s";
    const parts = `C launch ${c.p50.toFixed(2)} ms (p99 ${c.p99.toFixed(2)}), bare node start ${bare.p50.toFixed(1)} ms (p99 ${bare.p99.toFixed(1)})`;
    addRow({ group, measure: "`SELECT bgworker.launch(..., wait => true)` -> returns", unit: "ms", bgworker: returned, peer, peerLabel: label, ratio: fasterBy(peer, returned), note: `the SQL round trip included on both sides; ${parts}` });
    addRow({ group, measure: "`SELECT bgworker.launch(..., wait => true)` -> the worker's .ts function entered (its own clock)", unit: "ms", bgworker: entered, peer, peerLabel: label, ratio: fasterBy(peer, entered) });
    addFact("inserverLaunch", {
      bareNodeStartMs: roundSummary(bare),
      autoprewarmMs: roundSummary(c),
      /** Where the launch goes: until the worker's Node process begins, then until its function is entered. */
      launchToNodeProcessMs: roundSummary(summarize(launch.toNodeMs)),
      nodeProcessToFunctionMs: roundSummary(summarize(launch.nodeToEnteredMs)),
      bareSpawnToNodeProcessMs: roundSummary(summarize(launch.bareToProcessMs)),
      bareNodeProcessToFirstStatementMs: roundSummary(summarize(launch.bareNodeMs.map((ms, i) => ms - launch.bareToProcessMs[i]!))),
    });
  }
  if (latch !== undefined) {
    const ours = summarize(latch.inServerUs);
    const out = summarize(latch.outOfServerUs);
    const futex = summarize(latch.futexUs);
    addRow({ group, measure: "in-server setLatch -> waitLatch wake-up, across workers", unit: "us", bgworker: ours, peer: out, peerLabel: "out-of-server setLatch -> waitLatch (the latch group's measure, same run)", ratio: fasterBy(out, ours) });
    addRow({ group, measure: "in-server setLatch -> waitLatch wake-up, across workers", unit: "us", bgworker: ours, peer: futex, peerLabel: "raw futex wake between two out-of-server workers (floor)", ratio: fasterBy(futex, ours) });
  }
  if (results.postgresVersion !== undefined) addFact("inserver", { postgresql: results.postgresVersion });
}

function roundSummary(s: Summary): Summary {
  return { n: s.n, p50: round(s.p50), p99: round(s.p99), min: round(s.min), max: round(s.max) };
}
