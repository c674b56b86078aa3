/**
 * One database session per SPI worker, its own (PostgreSQL's 001_worker_spi.pl: dynamic workers launched to
 * (mydb, myrole) and (postgres, myrole) show exactly `mydb|myrole` and `postgres|myrole` in
 * `pg_stat_activity`), against a real throwaway cluster and a real postmaster (`bgworker start --database`).
 *
 * Spares open a session ahead of time for the served database's default database and user. A worker that
 * connects elsewhere must close it before `connectWorkerToSpi()` returns, and it must never carry the
 * worker's name; one that connects to the default adopts it instead of opening another. Both are checked
 * for worker libraries that import this package's own build and for an extension that brings its own copy
 * of bgworker in its `node_modules` (two copies of the package in the worker process).
 *
 * Sessions are attributed to processes exactly: a backend's `client_port` is the local port of one of the
 * process's TCP sockets (/proc). Every wait polls for an outcome for a bounded time, never for a fixed time.
 */
import assert from "node:assert/strict";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { after, before, describe, it, type TestContext } from "node:test";
import pg from "pg";
import { BackgroundWorkerBuilder, connect, type DynamicBackgroundWorker, type PostmasterClient } from "bgworker";
import { createTestCluster, type TestCluster } from "../helpers/cluster.js";
import { alive, eventually, processesIn, ROOT, startPostmaster, type RunningPostmaster, type WorkerEvent } from "../helpers/postmaster.js";

/** The workers' type: their sessions' application_name (001_worker_spi's 'worker_spi dynamic'). */
const TYPE = "worker_spi dynamic";
const SPARE = "bgworker spare";

/**
 * The worker library: it connects to the database and as the role named in its extra (JSON; null for the
 * postmaster's default), reports its session as the server sees it and how many TCP sockets it had open
 * when `connectWorkerToSpi()` returned, and waits. `idle` never connects.
 */
function workerSource(bgworker: string): string {
  return `
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { BackgroundWorker, Spi } from ${JSON.stringify(bgworker)};
function tcpSockets() {
  const tables = ["tcp", "tcp6"].map((t) => { try { return readFileSync("/proc/self/net/" + t, "utf8"); } catch { return ""; } }).join("\\n");
  const inodes = new Set(tables.split("\\n").map((line) => line.trim().split(/\\s+/)[9]).filter(Boolean));
  return readdirSync("/proc/self/fd").filter((fd) => {
    try { return inodes.has(/^socket:\\[(\\d+)\\]$/.exec(readlinkSync("/proc/self/fd/" + fd))?.[1]); } catch { return false; }
  }).length;
}
export async function connected() {
  const { dbname, username } = JSON.parse(BackgroundWorker.getExtra());
  await BackgroundWorker.connectWorkerToSpi(dbname, username);
  const socketsAtReturn = tcpSockets();
  const [session] = await BackgroundWorker.transaction(() =>
    Spi.select("select pg_backend_pid() as backend, current_database() as datname, current_user as usename"),
  );
  console.log(JSON.stringify({ event: "connected", pid: process.pid, name: BackgroundWorker.getName(), socketsAtReturn, ...session }));
  for (;;) if (!(await BackgroundWorker.waitLatch(null))) break;
}
export async function idle() {
  console.log(JSON.stringify({ event: "idle", pid: process.pid, name: BackgroundWorker.getName() }));
  for (;;) if (!(await BackgroundWorker.waitLatch(null))) break;
}
`;
}

let cluster: TestCluster;
let dir: string;
/** Imports this repository's build: the same copy of the package as the runner's own. */
let sharedLibrary: string;
/** An extension's library that imports its own copy of bgworker, from its own node_modules. */
let ownCopyLibrary: string;

before(async () => {
  cluster = await createTestCluster();
  dir = mkdtempSync(join(tmpdir(), "bgw-spi-sessions-"));
  sharedLibrary = join(dir, "shared-worker.mjs");
  writeFileSync(sharedLibrary, workerSource(pathToFileURL(join(ROOT, "dist", "index.js")).href));
  // A copy of the built package (a real copy: a symlink would resolve to this very module), whose own
  // dependencies resolve to this repository's.
  const extension = join(dir, "extension");
  const copy = join(extension, "node_modules", "bgworker");
  mkdirSync(copy, { recursive: true });
  cpSync(join(ROOT, "dist"), join(copy, "dist"), { recursive: true, filter: (path) => !path.endsWith(".map") });
  cpSync(join(ROOT, "package.json"), join(copy, "package.json"));
  symlinkSync(join(ROOT, "node_modules"), join(copy, "node_modules"));
  ownCopyLibrary = join(extension, "own-copy-worker.mjs");
  writeFileSync(ownCopyLibrary, workerSource("bgworker"));
  await sql("create role myrole login superuser");
  await sql("create database mydb");
});

after(async () => {
  await cluster?.stop();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

async function sql<R extends Record<string, unknown>>(text: string, params: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ ...cluster.params });
  client.on("error", () => undefined);
  await client.connect();
  try {
    return (await client.query<R>(text, params)).rows;
  } finally {
    await client.end();
  }
}

interface Session extends Record<string, unknown> {
  pid: number;
  application_name: string;
  datname: string | null;
  usename: string | null;
  client_port: number | null;
}

/** Every client session of the cluster but the one asking. */
function activity(): Promise<Session[]> {
  return sql<Session>(
    `select pid, application_name, datname, usename, client_port from pg_stat_activity
     where backend_type = 'client backend' and pid <> pg_backend_pid() order by pid`,
  );
}

/** The local ports of a process's TCP sockets: its sessions are the backends whose client_port is one. */
function tcpPortsOf(pid: number): Set<number> {
  const inodes = new Set<string>();
  let fds: string[] = [];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return new Set(); // gone
  }
  for (const fd of fds) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (match !== null) inodes.add(match[1]!);
    } catch {
      // closed meanwhile
    }
  }
  const ports = new Set<number>();
  for (const table of ["tcp", "tcp6"]) {
    let text = "";
    try {
      text = readFileSync(`/proc/${pid}/net/${table}`, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length > 9 && inodes.has(fields[9]!)) ports.add(Number.parseInt(fields[1]!.split(":")[1]!, 16));
    }
  }
  return ports;
}

/** The sessions a process holds. */
function sessionsOf(rows: Session[], pid: number): Session[] {
  const ports = tcpPortsOf(pid);
  return rows.filter((row) => row.client_port !== null && ports.has(row.client_port));
}

const show = (rows: Session[]): string => rows.map((r) => `${r.pid} ${r.application_name} ${r.datname}|${r.usename}`).join("; ") || "none";

/** Polls until `accept` returns a value; on timeout the message shows pg_stat_activity as last seen. */
async function activityUntil<T>(what: string, accept: (rows: Session[]) => T | undefined): Promise<T> {
  let last: Session[] = [];
  try {
    return await eventually(what, async () => {
      last = await activity();
      return accept(last);
    });
  } catch (error) {
    throw new Error(`${(error as Error).message}; client sessions last seen: ${show(last)}`);
  }
}

/** The runner processes of `pm` that are not (yet) workers: a worker's process title names its worker. */
function spares(pm: RunningPostmaster): number[] {
  return processesIn(pm.dir).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("runtime/bootstrap");
    } catch {
      return false;
    }
  });
}

/**
 * Waits until the pool has spares and each holds its session opened ahead of time; returns each spare's
 * session's backend pid by the spare's process id.
 */
async function sparesWithSessions(pm: RunningPostmaster): Promise<Map<number, number>> {
  return activityUntil("every spare to hold a session opened ahead of time", (rows) => {
    const pids = spares(pm);
    if (pids.length === 0) return undefined;
    const held = new Map<number, number>();
    for (const pid of pids) {
      const own = sessionsOf(rows, pid);
      if (own.length !== 1 || own[0]!.application_name !== SPARE) return undefined;
      held.set(pid, own[0]!.pid);
    }
    return held;
  });
}

async function withPostmaster(t: TestContext): Promise<RunningPostmaster> {
  const pm = await startPostmaster({ args: ["--database", cluster.url] });
  let client: PostmasterClient | undefined;
  t.after(async () => {
    await client?.close();
    await pm.close();
  });
  client = await connect(pm.socket);
  return pm;
}

let launches = 0;

interface Launched {
  worker: DynamicBackgroundWorker;
  pid: number;
  /** What the worker reported once `connectWorkerToSpi()` had returned: its session as the server sees it. */
  session: WorkerEvent;
}

/** Launches a worker of `library` that connects to (dbname, username), once it reports its session. */
async function launch(pm: RunningPostmaster, library: string, dbname: string | null, username: string | null): Promise<Launched> {
  const name = `session worker ${++launches}`;
  const worker = await new BackgroundWorkerBuilder(name)
    .setType(TYPE)
    .setLibrary(library)
    .setFunction("connected")
    .enableSpiAccess()
    .setRestartTime(null)
    .setExtra(JSON.stringify({ dbname, username }))
    .loadDynamic();
  const pid = await worker.waitForStartup();
  const [session] = await pm.waitForEvents("connected", 1, (e) => e.name === name);
  return { worker, pid, session: session! };
}

/**
 * Right after the worker reported (no wait: its spare's session must be gone before `connectWorkerToSpi()`
 * returned), its process holds exactly one session, the one it uses, under its type, database and role.
 */
function assertOwnSessionOnly(rows: Session[], launched: Launched, datname: string, usename: string): void {
  assert.equal(launched.session.socketsAtReturn, 1, `worker ${launched.pid} had one connection open when connectWorkerToSpi() returned`);
  const own = sessionsOf(rows, launched.pid);
  assert.deepEqual(
    own.map((r) => ({ pid: r.pid, application_name: r.application_name, datname: r.datname, usename: r.usename })),
    [{ pid: launched.session.backend, application_name: TYPE, datname, usename }],
    `worker ${launched.pid} holds exactly its own session (it holds: ${show(own)})`,
  );
}

async function stop(...launched: Launched[]): Promise<void> {
  await Promise.all(launched.map(({ worker }) => worker.terminate().waitForShutdown()));
}

for (const [copy, libraryOf] of [
  ["this package's build", () => sharedLibrary],
  ["an extension's own copy of bgworker", () => ownCopyLibrary],
] as const) {
  describe(`SPI sessions, worker library importing ${copy}`, () => {
    it("001_worker_spi: workers on (mydb, myrole) and (postgres, myrole) hold one session each, their own; the spares' are closed", async (t) => {
      const pm = await withPostmaster(t);
      // The first SPI worker tells the pool that SPI is in use: from then on spares open a session ahead of time.
      await stop(await launch(pm, libraryOf(), null, null));

      const launched: Launched[] = [];
      for (const [dbname, username] of [["mydb", "myrole"], ["postgres", "myrole"]] as const) {
        const held = await sparesWithSessions(pm);
        const worker = await launch(pm, libraryOf(), dbname, username);
        launched.push(worker);
        const spareSession = held.get(worker.pid);
        assert.ok(spareSession !== undefined, `worker ${worker.pid} was one of the spares that held a session (${[...held.keys()].join(", ")})`);
        assert.deepEqual([worker.session.datname, worker.session.usename], [dbname, username]);
        const rows = await activity();
        assertOwnSessionOnly(rows, worker, dbname, username);
        assert.ok(!rows.some((r) => r.pid === spareSession), `the spare's session ${spareSession} ended before connectWorkerToSpi() returned: ${show(rows)}`);
      }
      // As 001_worker_spi reads it: SELECT datname, usename FROM pg_stat_activity WHERE application_name = '...'
      const rows = await sql<{ datname: string; usename: string }>(
        "select datname, usename from pg_stat_activity where application_name = $1 order by datname, usename",
        [TYPE],
      );
      assert.deepEqual(rows.map((r) => `${r.datname}|${r.usename}`), ["mydb|myrole", "postgres|myrole"]);
      await stop(...launched);
    });

    it("a worker on the default database and user adopts its spare's session (no new connection), renamed after its type", async (t) => {
      const pm = await withPostmaster(t);
      await stop(await launch(pm, libraryOf(), null, null));
      const held = await sparesWithSessions(pm);
      const worker = await launch(pm, libraryOf(), null, null);
      assert.equal(worker.session.backend, held.get(worker.pid), "the worker's session is the one its spare opened ahead of time");
      assertOwnSessionOnly(await activity(), worker, "postgres", "postgres");
      await stop(worker);
    });
  });
}

describe("SPI sessions over many launches", () => {
  it("20 launches connecting elsewhere and to the default leave no backend behind", async (t) => {
    const pm = await withPostmaster(t);
    await stop(await launch(pm, sharedLibrary, null, null));
    await sparesWithSessions(pm);
    const others = (rows: Session[]): Session[] => rows.filter((r) => r.application_name !== SPARE);
    const before = others(await activity()).length;

    const targets = [["mydb", "myrole"], ["postgres", "myrole"], [null, null], ["mydb", null], [null, "myrole"]] as const;
    // Five at a time (the postmaster runs at most 8 workers): launches that take warm spares, booting ones and
    // cold boots, whose preparation and start may cross.
    for (let batch = 0; batch < 4; batch += 1) {
      const launched = await Promise.all(
        targets.map(([dbname, username], i) => launch(pm, (batch + i) % 2 === 0 ? sharedLibrary : ownCopyLibrary, dbname, username)),
      );
      const rows = await activity();
      launched.forEach((worker, i) => assertOwnSessionOnly(rows, worker, targets[i]![0] ?? "postgres", targets[i]![1] ?? "postgres"));
      assert.equal(rows.filter((r) => r.application_name === TYPE).length, 5, `five sessions named after the workers: ${show(rows)}`);
      await stop(...launched);
    }

    // Every session left is the baseline's or a live spare's, one per spare.
    await activityUntil(`the sessions to be back to ${before} besides the spares' own`, (rows) => {
      if (others(rows).length !== before) return undefined;
      const owned = spares(pm).flatMap((pid) => sessionsOf(rows, pid));
      const spareRows = rows.filter((r) => r.application_name === SPARE);
      return owned.length === spareRows.length && spareRows.every((r) => owned.includes(r)) ? true : undefined;
    });
  });

  it("a worker without SPI access closes its spare's session", async (t) => {
    const pm = await withPostmaster(t);
    await stop(await launch(pm, sharedLibrary, null, null));
    const held = await sparesWithSessions(pm);
    const name = `idle worker ${++launches}`;
    const worker = await new BackgroundWorkerBuilder(name).setType("idle").setLibrary(ownCopyLibrary).setFunction("idle").setRestartTime(null).loadDynamic();
    const pid = await worker.waitForStartup();
    await pm.waitForEvents("idle", 1, (e) => e.name === name);
    const spareSession = held.get(pid);
    assert.ok(spareSession !== undefined, "the worker was a spare that held a session");
    await activityUntil("the idle worker's spare session to end", (rows) =>
      !rows.some((r) => r.pid === spareSession) && sessionsOf(rows, pid).length === 0 ? true : undefined,
    );
    assert.ok(alive(pid));
    await worker.terminate().waitForShutdown();
  });
});
