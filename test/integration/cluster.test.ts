/**
 * Cluster mode (SPEC §10) with real postmasters (`bgworker start --cluster`) on one real PostgreSQL: a
 * cluster-scoped worker runs on exactly one node while host-scoped workers run on every node; a graceful stop
 * hands its lease over through the release's NOTIFY; a killed postmaster's worker dies with it and another
 * node takes over; a frozen holder is fenced by the database (its worker's session is ended before the next
 * generation starts) and kills its own worker when it wakes; a second live node with the same id is refused.
 *
 * Double runs are judged from the database alone: the worker writes one row per turn in a transaction of its
 * own, and no row of a generation may come after (by sequence) the first row of a newer one. Times come from
 * the postmasters' own log timestamps; nothing is counted in a wall-clock window.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import { connect } from "bgworker";
import { createTestCluster, type TestCluster } from "../helpers/cluster.js";
import { sql } from "../helpers/database.js";
import { eventually, ROOT, startPostmaster, type RunningPostmaster } from "../helpers/postmaster.js";
import type { TestWorker } from "../fixtures/extension.js";

const LIBRARY = join(ROOT, "test", "fixtures", "cluster", "workers.ts");
const LEDGER: TestWorker = { name: "ledger", function: "ledger", library: LIBRARY, spi: true, scope: "cluster", restartTimeMs: 100, argument: 20 };

let server: TestCluster;

before(async () => {
  server = await createTestCluster();
  await sql(server.params, "create table cluster_ledger (seq bigserial primary key, generation bigint not null, node text not null, at timestamptz not null default clock_timestamp())");
});

after(async () => {
  await server?.stop();
});

/** A node of cluster `cluster`, closed (and its workers checked gone) when the test ends. */
async function node(t: TestContext, cluster: string, id: string, workers: TestWorker[], extra: string[] = []): Promise<RunningPostmaster> {
  const pm = await startPostmaster({
    args: ["--database", server.url, "--cluster", cluster, "--node-id", id, "--log-file", "none", ...extra],
    workers,
    env: { BGW_TEST_NODE: id },
  });
  t.after(() => pm.close());
  return pm;
}

interface LeaseLine {
  readonly time: number;
  readonly generation: bigint;
}

/** The `n`-th (1-based) lease event of this kind in a node's log, with its time. */
async function leaseEvent(pm: RunningPostmaster, event: "lease-acquired" | "lease-released" | "leadership-lost", n = 1): Promise<LeaseLine> {
  const record = await pm.until(`${event} #${n}`, () => pm.records.filter((r) => r.event === event)[n - 1]);
  return { time: Date.parse(record.time), generation: BigInt(record.fields!.generation as string) };
}

function holds(pm: RunningPostmaster): boolean {
  return pm.records.some((r) => r.event === "lease-acquired");
}

/** No committed row of a generation after the first row of any newer one (SPEC §10: never two holders). */
async function assertNoDoubleRun(cluster: string): Promise<Map<bigint, number>> {
  const rows = await sql(server.params, `select seq::int, generation::text from cluster_ledger where node like '${cluster}-%' order by seq`);
  const counts = new Map<bigint, number>();
  let highest = -1n;
  for (const row of rows) {
    const generation = BigInt(row.generation as string);
    assert.ok(generation >= highest, `row ${String(row.seq)} of generation ${generation} was committed after a row of generation ${highest}`);
    highest = generation;
    counts.set(generation, (counts.get(generation) ?? 0) + 1);
  }
  return counts;
}

describe("cluster mode: postmasters sharing one database", () => {
  it("runs a cluster-scoped worker on exactly one node and host-scoped workers on every node; status shows scope and fencing token", async (t) => {
    const token: TestWorker = { name: "local", function: "token", library: LIBRARY };
    const a = await node(t, "one", "one-a", [LEDGER, token]);
    const b = await node(t, "one", "one-b", [LEDGER, token]);
    // Each node runs its own host-scoped worker, which has no fencing token.
    for (const pm of [a, b]) {
      const [event] = await pm.waitForEvents("token", 1, (e) => e.name === "local");
      assert.equal(event!.code, "ERR_BGWORKER_NOT_CLUSTER_SCOPED");
    }
    const holder = await eventually("a node leading", async () => [a, b].find((pm) => pm.events("leading").length > 0));
    const other = holder === a ? b : a;
    const [leading] = await holder.waitForEvents("leading");
    assert.equal(leading!.generation, "1");
    await assertNoDoubleRun("one");
    assert.ok(!holds(other), "the other node never acquired the lease");
    assert.equal(other.events("leading").length, 0);

    const client = await connect(holder.socket);
    t.after(() => client.close());
    const report = await client.statusReport();
    assert.deepEqual(report.postmaster.cluster, { name: "one", nodeId: holder === a ? "one-a" : "one-b" });
    const ledger = report.workers.find((w) => w.name === "ledger")!;
    assert.equal(ledger.scope, "cluster");
    assert.equal(ledger.fencingToken, "1");
    assert.equal(report.workers.find((w) => w.name === "local")!.scope, "host");
    const otherClient = await connect(other.socket);
    t.after(() => otherClient.close());
    const otherLedger = (await otherClient.status()).find((w) => w.name === "ledger")!;
    assert.equal(otherLedger.state, "waiting");
    assert.equal(otherLedger.fencingToken, null);
  });

  it("a graceful stop releases the lease and the other node takes it through the NOTIFY, not at expiry, with no double run", async (t) => {
    const a = await node(t, "two", "two-a", [LEDGER]);
    await a.waitForEvents("leading");
    const b = await node(t, "two", "two-b", [LEDGER]);
    const first = await leaseEvent(a, "lease-acquired");
    await sql(server.params, "select pg_sleep(0.1)"); // some rows of generation 1
    a.signal("SIGINT");
    const released = await leaseEvent(a, "lease-released");
    const acquired = await leaseEvent(b, "lease-acquired");
    assert.equal(released.generation, first.generation);
    assert.equal(acquired.generation, first.generation + 1n);
    // The old worker's exit is logged before the release is sent, so before any other node can acquire (its
    // "released" line may come after the other node's "acquired": both answers arrive together).
    const exit = await a.waitForLog(/^background worker "ledger" \(PID \d+\) exited with exit code 0$/);
    const exitedAt = Date.parse(exit.time);
    assert.ok(acquired.time >= exitedAt, "acquired after the old worker exited");
    // The lease (5000 ms by default) had not expired: the NOTIFY made the handover.
    assert.ok(acquired.time - exitedAt < 5000, `handed over ${acquired.time - exitedAt} ms after the old worker exited`);
    await b.waitForEvents("leading");
    assert.equal((await a.exited).code, 0);
    await assertNoDoubleRun("two");
  });

  it("a killed postmaster's worker dies with it, and another node takes the lease over", async (t) => {
    const a = await node(t, "three", "three-a", [LEDGER]);
    const [leading] = await a.waitForEvents("leading");
    const b = await node(t, "three", "three-b", [LEDGER]);
    await sql(server.params, "select pg_sleep(0.1)");
    a.signal("SIGKILL");
    const acquired = await leaseEvent(b, "lease-acquired");
    assert.equal(acquired.generation, BigInt(leading!.generation as string) + 1n);
    await b.waitForEvents("leading");
    await a.exited;
    // The old worker is gone (pm.close() checks every worker pid it logged), and no row of it follows G+1's.
    await assertNoDoubleRun("three");
  });

  it("a frozen holder is fenced: its worker's session is ended before the next generation starts, and it kills its worker when it wakes", async (t) => {
    const fast = ["--lease-ms", "2000", "--renew-ms", "400"];
    const a = await node(t, "four", "four-a", [LEDGER], fast);
    const [leading] = await a.waitForEvents("leading");
    const generation = BigInt(leading!.generation as string);
    const b = await node(t, "four", "four-b", [LEDGER], fast);
    const workerPid = leading!.pid;
    await sql(server.params, "select pg_sleep(0.1)");
    process.kill(a.pid, "SIGSTOP");
    process.kill(workerPid, "SIGSTOP");
    let acquired: LeaseLine;
    try {
      acquired = await leaseEvent(b, "lease-acquired");
      await b.waitForEvents("leading");
      // G+1 runs while the old holder is still frozen.
      assert.equal(acquired.generation, generation + 1n);
    } finally {
      process.kill(workerPid, "SIGCONT");
      process.kill(a.pid, "SIGCONT");
    }
    // Awake, the old holder's deadlines have passed: it kills its worker at once, and says why. The worker
    // may be first to run after SIGCONT: then it finds its session ended by the takeover and fails by itself.
    const lost = await leaseEvent(a, "leadership-lost");
    assert.equal(lost.generation, generation);
    await a.waitForLog(new RegExp(`^background worker "ledger" \\(PID ${workerPid}\\) (was terminated by signal \\d+|exited with exit code \\d+)`));
    await sql(server.params, "select pg_sleep(0.2)");
    const counts = await assertNoDoubleRun("four");
    assert.ok((counts.get(generation + 1n) ?? 0) > 0, "generation G+1 ran");
  });

  it("a second live node with the same id is refused with ERR_BGWORKER_CLUSTER_NODE_ID_IN_USE", async (t) => {
    await node(t, "five", "five-a", []);
    const twin = await startPostmaster({
      args: ["--database", server.url, "--cluster", "five", "--node-id", "five-a", "--log-file", "none"],
      ready: false,
    });
    t.after(() => twin.close());
    const { code } = await twin.exited;
    assert.equal(code, 1);
    assert.match(twin.transcript(), /node id "five-a" is in use by a live postmaster/);
  });
});
