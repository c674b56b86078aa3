/**
 * `bgworker status --cluster` (SPEC §10) end to end: two postmasters started by the CLI with `--cluster c` on
 * one throwaway PostgreSQL, each from its own directory, with one cluster-scoped worker; the CLI asks one of
 * them and shows both nodes live and the lease held by the node whose worker runs, at generation 1, with
 * heartbeats and the expiry by the server's clock. A postmaster not in a cluster answers with one clear
 * line and exit status 1. Every postmaster is closed (its workers checked gone) and the server removed.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import type { ClusterStatus } from "../../src/cluster/shell.js";
import { createTestCluster, type TestCluster } from "../helpers/cluster.js";
import { CLI, eventually, ROOT, runNode, startPostmaster, type RunningPostmaster } from "../helpers/postmaster.js";
import type { TestWorker } from "../fixtures/extension.js";

const LIBRARY = join(ROOT, "test", "fixtures", "cluster", "workers.ts");
/** Reports its fencing token once it runs, then waits on its latch: one process per lease. */
const LEDGER: TestWorker = { name: "ledger", function: "token", library: LIBRARY, scope: "cluster" };

let server: TestCluster | undefined;

before(async () => {
  server = await createTestCluster();
});

after(async () => {
  await server?.stop();
});

/** Node `id` of cluster `c`, started by `bgworker start` in a temp directory of its own; closed when the test ends. */
async function node(t: TestContext, id: string): Promise<RunningPostmaster> {
  const pm = await startPostmaster({
    args: ["--database", server!.url, "--cluster", "c", "--node-id", id, "--log-file", "none"],
    workers: [LEDGER],
    env: { BGW_TEST_NODE: id },
  });
  t.after(() => pm.close());
  return pm;
}

/** `bgworker status ARGS...` run as a user would. */
function status(...args: string[]): ReturnType<typeof runNode> {
  return runNode([CLI, "status", ...args]);
}

describe("bgworker status --cluster", () => {
  it("shows every node live and the cluster-scoped worker's lease with its holder, generation and expiry", async (t) => {
    const a = await node(t, "a");
    const b = await node(t, "b");
    // The node whose worker runs holds the lease; its worker reports the generation it runs under.
    const holder = await eventually("a node's worker running", async () => [a, b].find((pm) => pm.events("token").length > 0));
    const holderId = holder === a ? "a" : "b";
    const [event] = await holder.waitForEvents("token");
    assert.equal(event!.token, "1");

    // Polled: the second node's first heartbeat and the lease row may land a moment after its worker ran.
    const seen = await eventually("both nodes live and the lease held", async () => {
      const run = await status("--cluster", "--json", "--socket", a.socket);
      assert.equal(run.code, 0, run.stderr);
      const parsed = JSON.parse(run.stdout) as ClusterStatus;
      return parsed.nodes.length === 2 && parsed.nodes.every((n) => n.live) && parsed.leases[0]?.holder != null ? parsed : undefined;
    });
    assert.equal(seen.cluster, "c");
    assert.equal(seen.nodeId, "a", "the node asked");
    assert.deepEqual(
      seen.nodes.map((n) => ({ nodeId: n.nodeId, pid: n.pid, live: n.live })),
      [
        { nodeId: "a", pid: a.pid, live: true },
        { nodeId: "b", pid: b.pid, live: true },
      ],
    );
    for (const n of seen.nodes) {
      assert.ok(n.host.length > 0, "the node's host");
      // Heartbeats are the server's own times: recent by its clock (a heartbeat committed just after the
      // status query's now() may read a hair ahead of it).
      const age = seen.serverNow - n.heartbeatAt;
      assert.ok(age > -1000 && age < 10_000, `node ${n.nodeId}'s heartbeat is ${age} ms old by the server's clock`);
    }
    assert.equal(seen.leases.length, 1);
    const [lease] = seen.leases;
    assert.equal(lease!.worker, "ledger");
    assert.equal(lease!.holder, holderId);
    assert.equal(lease!.generation, "1");
    const left = lease!.expiresAt - seen.serverNow;
    assert.ok(left > 0 && left <= 5000, `the lease expires in ${left} ms by the server's clock (lease 5000 ms)`);

    // The same from the other node, as a table.
    const text = await status("--cluster", "--socket", b.socket);
    assert.equal(text.code, 0, text.stderr);
    const lines = text.stdout.trimEnd().split("\n");
    assert.equal(lines[0], "cluster c, as seen by node b (times by the database server's clock)");
    assert.match(lines[1]!, /^NODE +HOST +PID +LAST HEARTBEAT +LIVE$/);
    assert.match(lines[2]!, new RegExp(`^a +\\S+ +${a.pid} +\\d+\\.\\d s ago +yes$`));
    assert.match(lines[3]!, new RegExp(`^b +\\S+ +${b.pid} +\\d+\\.\\d s ago +yes$`));
    assert.equal(lines[4], "");
    assert.match(lines[5]!, /^WORKER +HOLDER +GENERATION +LEASE$/);
    assert.match(lines[6]!, new RegExp(`^ledger +${holderId} +1 +expires in \\d+\\.\\d s$`));
    assert.equal(lines.length, 7);
  });

  it("fails with one clear line and exit status 1 against a postmaster that is not in a cluster", async (t) => {
    const pm = await startPostmaster();
    t.after(() => pm.close());
    for (const json of [[], ["--json"]]) {
      const run = await status("--cluster", ...json, "--socket", pm.socket);
      assert.equal(run.code, 1, run.stderr);
      assert.equal(run.stdout, "");
      assert.equal(run.stderr, "bgworker: status --cluster: this postmaster is not in a cluster (start it with --cluster NAME)\n");
    }
    // The postmaster goes on answering: the refusal is an error reply, not a dropped connection.
    const plain = await status("--json", "--socket", pm.socket);
    assert.equal(plain.code, 0, plain.stderr);
  });

  it("--cluster and --all exclude each other (a usage error, exit status 2)", async () => {
    const run = await status("--cluster", "--all");
    assert.equal(run.code, 2);
    assert.equal(run.stderr, 'bgworker: --all and --cluster exclude each other (see "bgworker status --help")\n');
  });
});
