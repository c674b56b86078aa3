/**
 * `npm run cluster-fault -- --idle`: cluster mode's idle
 * cost on the database, issue #20's "one database session per postmaster, at most one query per renewal period
 * per lease". Three postmasters by the CLI on one throwaway PostgreSQL, each with L cluster-scoped workers that
 * never touch the database, for L = 1 and 4; and, as the baseline, the same three without `--cluster` (the
 * postmaster's own watch of its database runs either way). For each: the cluster sessions in
 * `pg_stat_activity`, and the server's committed transactions (each statement is one) over a window, less the
 * baseline, per node, per lease and per renewal period.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { createTestCluster, type TestCluster } from "../helpers/cluster.js";
import { startPostmaster, ROOT, type RunningPostmaster } from "../helpers/postmaster.js";
import type { TestWorker } from "../fixtures/extension.js";

const WINDOW_MS = 10_000;
const RENEW_MS = 1000;
const NODES = 3;
const LIBRARY = join(ROOT, "test", "fixtures", "cluster", "workers.ts");

export interface IdleRow {
  /** Cluster-scoped workers per node (0: the baseline, no `--cluster`). */
  readonly leases: number;
  readonly clusterSessions: number;
  /** Committed transactions per second on the server, all nodes together. */
  readonly perSecond: number;
  /** Above the baseline, per node and renewal period. */
  readonly perNodePeriod: number | null;
  /** Above the baseline, per node, renewal period and lease. */
  readonly perLeasePeriod: number | null;
}

async function committed(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ n: string }>("select xact_commit::text as n from pg_stat_database where datname = current_database()");
  return Number(rows[0]!.n);
}

async function measure(server: TestCluster, client: pg.Client, leases: number): Promise<{ sessions: number; perSecond: number }> {
  const workers: TestWorker[] = Array.from({ length: leases }, (_, i) => ({ name: `idle-${i}`, function: "token", library: LIBRARY, scope: "cluster" }));
  const nodes: RunningPostmaster[] = [];
  try {
    for (let i = 0; i < NODES; i++) {
      const cluster = leases === 0 ? [] : ["--cluster", "idle", "--node-id", `idle-${i}`, "--renew-ms", String(RENEW_MS)];
      nodes.push(await startPostmaster({ args: ["--database", server.url, "--log-file", "none", "--spare-runners", "0", ...cluster], workers }));
    }
    // Settled: every lease held somewhere, the others polling.
    await new Promise((resolve) => setTimeout(resolve, 3 * RENEW_MS));
    const { rows } = await client.query<{ n: number }>("select count(*)::int as n from pg_stat_activity where application_name like 'bgworker cluster %'");
    // Statistics are flushed by each backend at most once a second: a window of whole seconds, read twice.
    await client.query("select pg_stat_clear_snapshot()");
    const before = await committed(client);
    const started = performance.now();
    await new Promise((resolve) => setTimeout(resolve, WINDOW_MS));
    await client.query("select pg_stat_clear_snapshot()");
    const after = await committed(client);
    const elapsed = performance.now() - started;
    // Less this script's own statements in the window (the snapshot clears and the second read).
    return { sessions: rows[0]!.n, perSecond: (after - before - 2) / (elapsed / 1000) };
  } finally {
    for (const node of nodes) await node.close();
  }
}

export async function measureIdle(log: (line: string) => void = () => undefined): Promise<IdleRow[]> {
  const server = await createTestCluster();
  const client = new pg.Client(server.params);
  const scratch = mkdtempSync(join(tmpdir(), "bgw-idle-"));
  try {
    await client.connect();
    const rows: IdleRow[] = [];
    let baseline = 0;
    for (const leases of [0, 1, 4]) {
      const { sessions, perSecond } = await measure(server, client, leases);
      if (leases === 0) baseline = perSecond;
      const above = (perSecond - baseline) / NODES / (1000 / RENEW_MS);
      const row: IdleRow = {
        leases,
        clusterSessions: sessions,
        perSecond,
        perNodePeriod: leases === 0 ? null : above,
        perLeasePeriod: leases === 0 ? null : above / leases,
      };
      log(`${leases === 0 ? "baseline (no --cluster)" : `${leases} lease(s) per node`}: ${sessions} cluster session(s), ${perSecond.toFixed(1)} transactions/s`);
      rows.push(row);
    }
    return rows;
  } finally {
    await client.end().catch(() => undefined);
    await server.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}

export function idleTable(rows: readonly IdleRow[]): string {
  const lines = [
    `| cluster-scoped workers per node | cluster sessions (${NODES} nodes) | transactions/s on the server | above the baseline, per node and renewal period | per lease and renewal period |`,
    "| --- | --- | --- | --- | --- |",
  ];
  for (const r of rows) {
    const fmt = (v: number | null): string => (v === null ? "-" : v.toFixed(2));
    lines.push(`| ${r.leases === 0 ? "0 (baseline: no --cluster)" : r.leases} | ${r.clusterSessions} | ${r.perSecond.toFixed(1)} | ${fmt(r.perNodePeriod)} | ${fmt(r.perLeasePeriod)} |`);
  }
  return lines.join("\n");
}
