/**
 * The programmatic API of SPEC §2 in this very process: `new Postmaster({...})`, `start()`, dynamic workers
 * launched from the postmaster's own process with `builder.loadDynamic()`, `status()`, and `stop()` in each
 * mode. Workers are real processes; no database is served (the CLI tests cover the command line).
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { BackgroundWorkerBuilder } from "../../src/builder.js";
import { processAlive } from "../../src/database/owner.js";
import { BackgroundWorkerStatus, BackgroundWorkerStatusError } from "../../src/errors.js";
import type { DynamicBackgroundWorker } from "../../src/handle.js";
import { Postmaster } from "../../src/postmaster/postmaster.js";
import type { WorkerStatusRow } from "../../src/status.js";
import type { TestWorker } from "../fixtures/extension.js";
import { createTestCluster } from "../helpers/cluster.js";
import { PATIENCE_MS, ROOT, TEST_EXTENSION } from "../helpers/postmaster.js";

const DYNAMIC_LIBRARY = join(ROOT, "test", "fixtures", "dynamic", "workers.ts");
const DATABASE_LIBRARY = join(ROOT, "test", "fixtures", "database", "workers.ts");

type Event = { event: string; pid: number; [field: string]: unknown };

let dir: string;
let eventsFile: string;
let logLines: string[];
let pm: Postmaster | undefined;
const pids = new Set<number>();

before(() => {
  dir = mkdtempSync(join(tmpdir(), "bgw-api-"));
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

afterEach(async () => {
  // Whatever a test left running is stopped, and no worker process may outlive it.
  await pm?.stop("immediate");
  pm = undefined;
  for (const pid of pids) {
    await until(`worker ${pid} to be gone`, () => (processAlive(pid) ? undefined : true));
  }
  pids.clear();
  delete process.env.BGW_TEST_WORKERS;
  delete process.env.BGW_TEST_EVENTS;
});

async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + PATIENCE_MS;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** What the workers printed: static workers also append to the events file, dynamic ones only print (logged as JSON). */
function events(name: string): Event[] {
  const printed = logLines
    .map((line) => JSON.parse(line) as { stream?: string; message: string })
    .filter((record) => record.stream === "stdout" && record.message.startsWith("{"))
    .map((record) => record.message);
  const appended = existsSync(eventsFile) ? readFileSync(eventsFile, "utf8").split("\n") : [];
  const seen = new Set<string>();
  return [...appended, ...printed]
    .filter((line) => line.startsWith("{") && !seen.has(line) && seen.add(line))
    .map((line) => JSON.parse(line) as Event)
    .filter((e) => e.event === name);
}

/** A started postmaster in this process with these static workers, its log kept, its workers' events in a file. */
async function startPostmaster(workers: TestWorker[], options: { socketPath?: string | false; database?: { url: string } } = {}): Promise<Postmaster> {
  eventsFile = join(mkdtempSync(join(dir, "t-")), "events.jsonl");
  logLines = [];
  // The test extension registers what BGW_TEST_WORKERS names; workers inherit the environment.
  process.env.BGW_TEST_WORKERS = JSON.stringify(workers);
  process.env.BGW_TEST_EVENTS = eventsFile;
  pm = new Postmaster({
    extensions: [TEST_EXTENSION],
    database: options.database ?? false,
    socketPath: options.socketPath ?? false,
    logFormat: "json",
    logSink: (line) => logLines.push(line),
    cwd: ROOT,
  });
  await pm.start();
  return pm;
}

function dynamic(name: string, fn: string): BackgroundWorkerBuilder {
  return new BackgroundWorkerBuilder(name).setLibrary(DYNAMIC_LIBRARY).setFunction(fn);
}

function row(postmaster: Postmaster, name: string): WorkerStatusRow | undefined {
  return postmaster.status().workers.find((r) => r.name === name);
}

async function runningPid(postmaster: Postmaster, name: string): Promise<number> {
  const pid = await until(`${name} to run`, () => {
    const found = row(postmaster, name);
    return found?.state === "running" && found.pid !== null ? found.pid : undefined;
  });
  pids.add(pid);
  return pid;
}

async function launched(worker: DynamicBackgroundWorker): Promise<number> {
  const pid = await worker.waitForStartup();
  pids.add(pid);
  return pid;
}

describe("Postmaster in this process", () => {
  it("refuses bad options in the constructor, naming option, value and rule, and starts nothing", () => {
    assert.throws(() => new Postmaster({ extensions: [], database: { url: "mysql://u:secret@h/db" } }), (error: unknown) => {
      assert.ok(error instanceof TypeError);
      assert.equal((error as { code?: string }).code, "ERR_BGWORKER_INVALID_OPTION");
      assert.match(error.message, /^Postmaster: database\.url: scheme "mysql" is not PostgreSQL's/);
      assert.ok(!error.message.includes("secret"), "a URL's password is never repeated");
      return true;
    });
    assert.throws(() => new Postmaster({ extensions: [], maxWorkerProcesses: 0 }), /maxWorkerProcesses 0 must be an integer from 1/);
  });

  it("starts its static workers, launches from its own process, reports status, and stops smart", async () => {
    const postmaster = await startPostmaster([{ name: "static looper", function: "latchLoop" }]);
    const staticPid = await runningPid(postmaster, "static looper");

    // The postmaster's own process launches: no connect(), the notify pid is this process.
    const trigger = join(dir, `go-${process.pid}`);
    const finisher = await dynamic("finisher", "finishOnFile").setExtra(trigger).loadDynamic();
    assert.equal(finisher.notifyPid, process.pid);
    const finisherPid = await launched(finisher);
    assert.equal(await finisher.pid(), finisherPid);
    assert.equal(await finisher.status(), BackgroundWorkerStatus.Started);

    const report = postmaster.status();
    assert.equal(report.postmaster.pid, process.pid);
    assert.equal(report.postmaster.database, "none (--no-database)");
    const finisherRow = report.workers.find((r) => r.handle === finisher.handle);
    assert.ok(finisherRow, "the dynamic worker has a row with its handle");
    assert.equal(finisherRow.pid, finisherPid);
    assert.equal(finisherRow.kind, "dynamic");
    assert.equal(finisherRow.notifyPid, process.pid);

    // Smart: new launches are refused, the dynamic worker finishes its work, then the static one stops.
    const finished = finisher.waitForShutdown();
    const stopping = postmaster.stop("smart");
    assert.equal(postmaster.status().postmaster.shutdown, "smart");
    await assert.rejects(dynamic("late", "idle").loadDynamic(), (error: unknown) => {
      assert.equal((error as { code?: string }).code, "ERR_BGWORKER_SHUTTING_DOWN");
      return true;
    });
    assert.equal(await finisher.status(), BackgroundWorkerStatus.Started, "a smart shutdown lets dynamic workers work");
    assert.ok(processAlive(staticPid), "static workers run until the dynamic ones are done");
    writeFileSync(trigger, "");
    await finished;
    await stopping;
    const finishedEvent = await until("the finisher's last words", () => events("finished").find((e) => e.pid === finisherPid));
    assert.equal(finishedEvent.sigterm, false, "it finished on its own");
    assert.equal(events("loop-ended").find((e) => e.pid === staticPid)?.sigterm, true, "then the static worker got SIGTERM");
    await postmaster.closed;
    assert.equal(postmaster.failure, undefined);
    // A handle outlives its postmaster: it reports that the postmaster is gone.
    assert.equal(await finisher.status(), BackgroundWorkerStatus.PostmasterDied);
    await assert.rejects(dynamic("after", "idle").loadDynamic(), /has no postmaster to run it/);
  });

  it("terminates a dynamic worker through its handle, never restarting it", async () => {
    const postmaster = await startPostmaster([]);
    const worker = await dynamic("idler", "idle").setArgument(7).setRestartTime(0).loadDynamic();
    const pid = await launched(worker);
    await worker.terminate().waitForShutdown();
    assert.equal(await worker.status(), BackgroundWorkerStatus.Stopped);
    assert.equal(row(postmaster, "idler")?.state, "stopped");
    await assert.rejects(worker.pid(), (error: unknown) => error instanceof BackgroundWorkerStatusError && error.status === BackgroundWorkerStatus.Stopped);
    await until("the worker's last words", () => (events("terminated").some((e) => e.pid === pid) ? true : undefined));
  });

  it("stops fast: SIGTERM to every worker, resolving once all are gone", async () => {
    const postmaster = await startPostmaster([{ name: "static looper", function: "latchLoop" }]);
    const staticPid = await runningPid(postmaster, "static looper");
    const idler = await dynamic("idler", "idle").loadDynamic();
    const idlerPid = await launched(idler);
    const shutdown = idler.waitForShutdown();
    await postmaster.stop("fast");
    await shutdown;
    assert.ok(!processAlive(staticPid) && !processAlive(idlerPid));
    assert.equal(events("loop-ended").find((e) => e.pid === staticPid)?.sigterm, true);
    assert.ok(logLines.some((line) => line.includes("received fast shutdown request")));
  });

  it("stops immediately: SIGKILL, even for a worker that ignores SIGTERM", async () => {
    const postmaster = await startPostmaster([{ name: "sleeper", function: "sleepForever" }]);
    const pid = await runningPid(postmaster, "sleeper");
    await postmaster.stop("immediate");
    assert.ok(!processAlive(pid));
    assert.ok(logLines.some((line) => line.includes("received immediate shutdown request")));
    // A second stop after the end resolves at once.
    await postmaster.stop("fast");
  });

  it("serves the control socket beside its own launches: a client sees the same slots", async () => {
    const socketPath = join(mkdtempSync(join(dir, "s-")), "bgworker.sock");
    const postmaster = await startPostmaster([], { socketPath });
    const local = await dynamic("local", "idle").loadDynamic();
    await launched(local);
    const { connect } = await import("../../src/control/client.js");
    const client = await connect(socketPath);
    try {
      const rows = await client.status();
      assert.ok(rows.some((r) => r.handle === local.handle));
      // The handle can be attached from the client, but only its notify pid (this process as the postmaster) may wait.
      assert.equal(await client.attach(local.handle).status(), BackgroundWorkerStatus.Started);
    } finally {
      await client.close();
    }
    await postmaster.stop("fast");
  });

  it("serves a real database: phase running, and an SPI worker launched from the postmaster's process connects", async () => {
    const cluster = await createTestCluster();
    try {
      const postmaster = await startPostmaster([], { database: { url: cluster.url } });
      // The phase comes from watching the server, a moment after start() has resolved.
      const report = await until("phase running", () => (postmaster.status().postmaster.phase === "running" ? postmaster.status() : undefined));
      assert.match(report.postmaster.database, new RegExp(`${cluster.params.port}`));
      const session = await new BackgroundWorkerBuilder("session").setLibrary(DATABASE_LIBRARY).setFunction("spiSession").enableSpiAccess().loadDynamic();
      const pid = await launched(session);
      const connected = await until("the worker's session", () => events("connected").find((e) => e.pid === pid));
      assert.equal(connected.database, "postgres");
      assert.equal(connected.inRecovery, false);
      await postmaster.stop("fast");
    } finally {
      await pm?.stop("immediate");
      await cluster.stop();
    }
  });
});
