/**
 * The warm spare pool end to end (docs/performance.md): spares preload the libraries the postmaster knows of,
 * a preloaded worker still sees its own name, argument and extra, a library whose top-level code needs the
 * worker's role is left to the launch, a spare says it is ready only once its libraries have loaded, and a
 * burst beyond the pool starts every worker and grows the pool.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { BackgroundWorkerBuilder, connect, type PostmasterClient } from "bgworker";
import { createTestCluster } from "../helpers/cluster.js";
import { eventually, ROOT, startPostmaster, type RunningPostmaster } from "../helpers/postmaster.js";

const SPARES_LIBRARY = join(ROOT, "test", "fixtures", "spares", "workers.ts");
const NEEDS_ROLE_LIBRARY = join(ROOT, "test", "fixtures", "spares", "needs-role.ts");
const SLOW_PRELOAD_LIBRARY = join(ROOT, "test", "fixtures", "spares", "slow-preload.ts");

async function withClient(body: (pm: RunningPostmaster, client: PostmasterClient) => Promise<void>, args?: string[]): Promise<void> {
  const pm = await startPostmaster(args === undefined ? {} : { args });
  let client: PostmasterClient | undefined;
  try {
    client = await connect(pm.socket);
    await body(pm, client);
  } finally {
    await client?.close();
    await pm.close();
  }
}

/** How long a test launches workers waiting for a spare that has got ready: far beyond a slow machine's boots. */
const SPARE_PATIENCE_MS = 60_000;

/** Waits until a spare runner runs, then gives it a moment to get ready (a launch before that is served all the same). */
async function nextSpare(pm: RunningPostmaster): Promise<void> {
  await eventually("a spare runner", async () => (spares(pm) >= 1 ? true : undefined), SPARE_PATIENCE_MS);
  await new Promise((resolve) => setTimeout(resolve, 300));
}

/** Spare runners of the postmaster: its children that have not become a worker (still titled as the bootstrap). */
function sparePids(pm: RunningPostmaster): string[] {
  const children = readFileSync(`/proc/${pm.pid}/task/${pm.pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
  return children.filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("bootstrap.js");
    } catch {
      return false;
    }
  });
}

function spares(pm: RunningPostmaster): number {
  return sparePids(pm).length;
}

describe("warm spares", () => {
  it("preload a library the postmaster knows of; the worker still sees its own name, argument and extra", async () => {
    await withClient(async (pm, client) => {
      const launch = async (name: string, argument: number): Promise<void> => {
        const builder = new BackgroundWorkerBuilder(name).setLibrary(SPARES_LIBRARY).setFunction("report").setArgument(argument).setExtra(`extra of ${name}`);
        await (await client.loadDynamic(builder)).waitForShutdown();
      };
      // Unknown until now: imported at launch, after the worker's role was set.
      await launch("first", 1);
      const [first] = await pm.waitForEvents("report", 1);
      assert.equal(first!.roleAtImport, "first");
      // From now on spares preload it: a later launch finds it imported before the process knew its worker.
      // Spares boot at the machine's pace: launches go on (each once a spare runs) until one finds it.
      let preloaded: Record<string, unknown> | undefined;
      const deadline = Date.now() + SPARE_PATIENCE_MS;
      for (let i = 2; preloaded === undefined; i++) {
        assert.ok(Date.now() < deadline, `no launch of ${i - 2} in ${SPARE_PATIENCE_MS} ms found its library preloaded by a spare`);
        await nextSpare(pm);
        await launch(`worker ${i}`, i);
        const reports = await pm.waitForEvents("report", i);
        const latest = reports[reports.length - 1]!;
        assert.equal(latest.name, `worker ${i}`);
        assert.equal(latest.type, `worker ${i}`);
        assert.equal(latest.argument, i);
        assert.equal(latest.extra, `extra of worker ${i}`);
        if (latest.roleAtImport === "none") preloaded = latest;
      }
    });
  });

  it("say they are ready only once the libraries of their first preparation have loaded", async () => {
    // A static worker's library is known before the first spare boots, and comes with its fork: the spare
    // preloads it, and its one second of top-level code ends by leaving a file named by the process's pid.
    const markers = mkdtempSync(join(tmpdir(), "bgw-preload-"));
    const pm = await startPostmaster({ workers: [{ name: "slow library", library: SLOW_PRELOAD_LIBRARY, function: "idle" }], env: { BGW_TEST_PRELOAD_MARKERS: markers } });
    let client: PostmasterClient | undefined;
    try {
      const status = await connect(pm.socket);
      client = status;
      // The first report with the one spare ready; nothing is launched, so the pool stays at that spare. The
      // worker's process is titled as a spare until it has become the worker: wait for one such process.
      const spare = await eventually(
        "a ready spare",
        async () => {
          const { spares: pool } = (await status.statusReport()).postmaster;
          if (pool.ready < 1 || pool.count !== 1) return undefined;
          const pids = sparePids(pm);
          return pids.length === 1 ? pids[0] : undefined;
        },
        SPARE_PATIENCE_MS,
      );
      assert.ok(existsSync(join(markers, spare)), `spare ${spare} said it was ready before its library had loaded\n${pm.transcript()}`);
    } finally {
      await client?.close();
      await pm.close();
      rmSync(markers, { recursive: true, force: true });
    }
  });

  it("leave a library whose top-level code needs the worker's role to the launch", async () => {
    await withClient(async (pm, client) => {
      const launch = async (name: string): Promise<void> => {
        await (await client.loadDynamic(new BackgroundWorkerBuilder(name).setLibrary(NEEDS_ROLE_LIBRARY).setFunction("named"))).waitForShutdown();
      };
      await launch("alpha");
      await pm.waitForLog(/could not be preloaded; it will be imported at launch/);
      await launch("beta");
      await launch("gamma");
      const named = await pm.waitForEvents("named", 3);
      assert.deepEqual(
        named.map((event) => [event.nameAtImport, event.name]),
        [["alpha", "alpha"], ["beta", "beta"], ["gamma", "gamma"]],
      );
    });
  });

  it("start every worker of a burst beyond the pool, and grow the pool with demand", async () => {
    await withClient(async (pm, client) => {
      await eventually("the first spare", async () => (spares(pm) >= 1 ? true : undefined));
      const workers = await Promise.all(
        Array.from({ length: 6 }, (_, i) => client.loadDynamic(new BackgroundWorkerBuilder(`burst ${i}`).setLibrary(join(ROOT, "test", "fixtures", "workers.ts")).setFunction("latchLoop"))),
      );
      const pids = await Promise.all(workers.map((worker) => worker.waitForStartup()));
      assert.equal(new Set(pids).size, 6);
      await Promise.all(workers.map((worker) => worker.terminate().waitForShutdown()));
      // Five launches found no warm spare: the pool keeps more than its floor of one for a while.
      await eventually("the pool to grow", async () => (spares(pm) >= 3 ? true : undefined));
    });
  });

  it("open a database session ahead of time that an SPI worker adopts, renamed after its type", async () => {
    const cluster = await createTestCluster();
    try {
      await withClient(async (pm, client) => {
        const launch = async (name: string): Promise<void> => {
          await (await client.loadDynamic(new BackgroundWorkerBuilder(name).setLibrary(SPARES_LIBRARY).setFunction("sessionReport").enableSpiAccess())).waitForShutdown();
        };
        // The first SPI worker tells the pool that SPI is in use; later ones find a session already open.
        await launch("first spi");
        let adopted: Record<string, unknown> | undefined;
        const deadline = Date.now() + SPARE_PATIENCE_MS;
        for (let i = 2; adopted === undefined; i++) {
          assert.ok(Date.now() < deadline, `no SPI worker of ${i - 2} launched in ${SPARE_PATIENCE_MS} ms adopted a session opened before it started`);
          await nextSpare(pm);
          await launch(`spi ${i}`);
          const sessions = await pm.waitForEvents("session", i);
          const latest = sessions[sessions.length - 1]!;
          assert.equal(latest.applicationName, `spi ${i}`);
          if ((latest.sessionStartedMs as number) < (latest.enteredAt as number)) adopted = latest;
        }
      }, ["--database", cluster.url]);
    } finally {
      await cluster.stop();
    }
  });
});
