/**
 * Everything one harness run stands on: a throwaway PostgreSQL (commit timestamps tracked, synchronous
 * commit: a committed row is a row), the singleton's table and the shared file, one TCP relay per node
 * place (A, B, C) and, as root, one network namespace per place, and the three postmasters.
 *
 * A node place is reached by one of two routes: through its relay on loopback (every fault but one), or
 * from its network namespace straight to the server (the namespace partition). Changing route restarts the
 * three postmasters. A postmaster stopped or killed by a fault is replaced by a fresh one (a new node id,
 * `A2`, `A3`...) in the same place.
 *
 * `healthy()` is the steady state that every trial starts from: three postmasters running, each with its
 * cluster session in pg_stat_activity, the lease held by one of them, and its singleton's lines flowing.
 * `close()` removes everything, also after a failure.
 */
import { mkdtemp, rm, appendFile, chmod } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { Cluster, SERVER_LOG } from "../../src/database/cluster.js";
import { runAs } from "../../src/database/owner.js";
import { createTestCluster, type TestCluster } from "../helpers/cluster.js";
import { WORKER_NAME } from "./fixtures/names.js";
import { NetnsLink } from "./netns.js";
import { ClusterNode } from "./nodes.js";
import type { RunRow } from "./overlap.js";
import { Relay } from "./relay.js";
import { SharedFile } from "./shared-file.js";

export const LABELS = ["A", "B", "C"] as const;
export type Route = "relay" | "netns";

export interface WorldOptions {
  readonly leaseMs: number;
  readonly renewMs: number;
  /** Create the network namespaces (root only; the caller checked). */
  readonly netns: boolean;
  /** The singleton calls bgworker.fence() in each transaction. */
  readonly fence: boolean;
  readonly log: (line: string) => void;
}

export interface Steady {
  readonly holder: ClusterNode;
  readonly generation: bigint;
  readonly workerPid: number;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The table the singleton writes, and its sequence. */
async function createRunTable(pool: pg.Pool, name: string): Promise<void> {
  await pool.query(
    `create table ${name} (generation bigint not null, node text not null, seq bigint not null, inserted_at timestamptz not null, pid integer not null);` +
      `create sequence ${name}_seq; create index on ${name} (generation);`,
  );
}

export class World {
  readonly cluster = `fault-${process.pid}`;
  readonly nodes = new Map<string, ClusterNode>();
  readonly relays = new Map<string, Relay>();
  readonly links = new Map<string, NetnsLink>();
  /** Every node that ever ran, for the final report (lease events of replaced nodes). */
  readonly allNodes: ClusterNode[] = [];
  route: Route | null = null;
  private readonly incarnations = new Map<string, number>();
  private closed = false;

  private constructor(
    readonly options: WorldOptions,
    readonly dir: string,
    readonly pg: TestCluster,
    readonly pool: pg.Pool,
    readonly file: SharedFile,
    readonly commitTimestamps: boolean,
    /** Why the namespaces asked for could not be made, or null. */
    readonly netnsError: string | null,
  ) {}

  static async create(options: WorldOptions): Promise<World> {
    const dir = await mkdtemp(join(tmpdir(), "bgw-cluster-fault-"));
    await chmod(dir, 0o755);
    const links: NetnsLink[] = [];
    let test: TestCluster | undefined;
    let pool: pg.Pool | undefined;
    try {
      let netnsError: string | null = null;
      if (options.netns) {
        const tag = process.pid.toString(36).slice(-5);
        try {
          for (const [i, label] of LABELS.entries()) links.push(await NetnsLink.create(tag, label, i + 1));
        } catch (error) {
          // A container may refuse namespaces even to root: the namespace fault is skipped, saying why.
          netnsError = `the network namespaces could not be made: ${error instanceof Error ? error.message : String(error)}`;
          for (const link of links.splice(0)) await link.destroy();
        }
      }
      const listen = ["127.0.0.1", ...links.map((l) => l.hostAddress)].join(",");
      test = await createTestCluster({
        settings: { synchronous_commit: "on", track_commit_timestamp: "on", listen_addresses: listen, max_connections: 200 },
      });
      if (links.length > 0) {
        await appendFile(join(test.pgdata, "pg_hba.conf"), `\nhost all all ${NetnsLink.network()} trust\n`);
      }
      pool = new pg.Pool({ ...test.params, max: 4 });
      pool.on("error", () => undefined); // sessions die with the server's restarts: a query retries
      if (links.length > 0) await pool.query("select pg_reload_conf()");
      await createRunTable(pool, "fault_runs");
      await createRunTable(pool, "fault_runs_negative");
      const tracked = (await pool.query<{ on: string }>("select current_setting('track_commit_timestamp') as on")).rows[0]?.on === "on";
      const world = new World(options, dir, test, pool, new SharedFile(join(dir, "runs.log")), tracked, netnsError);
      for (const [i, label] of LABELS.entries()) {
        world.relays.set(label, await Relay.open({ host: "127.0.0.1", port: test.params.port }));
        const link = links[i];
        if (link !== undefined) world.links.set(label, link);
      }
      return world;
    } catch (error) {
      await pool?.end().catch(() => undefined);
      await test?.stop().catch(() => undefined);
      for (const link of links) await link.destroy();
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
  }

  private log(line: string): void {
    this.options.log(line);
  }

  /** The database URL of place `label` by `route`. */
  private urlFor(label: string, route: Route): string {
    if (route === "netns") {
      const link = this.links.get(label);
      if (link === undefined) throw new Error(`no network namespace for node ${label}`);
      return `postgres://postgres@${link.hostAddress}:${this.pg.params.port}/postgres`;
    }
    return `postgres://postgres@127.0.0.1:${this.relays.get(label)!.port}/postgres`;
  }

  /** Starts a fresh postmaster in place `label` (a new node id), by the current route. */
  async startNode(label: string): Promise<ClusterNode> {
    const route = this.route ?? "relay";
    const n = (this.incarnations.get(label) ?? 0) + 1;
    this.incarnations.set(label, n);
    const node = await ClusterNode.start({
      label,
      nodeId: `${label}${n}`,
      databaseUrl: this.urlFor(label, route),
      cluster: this.cluster,
      leaseMs: this.options.leaseMs,
      renewMs: this.options.renewMs,
      ...(route === "netns" ? { netns: this.links.get(label)!.namespace } : {}),
      env: {
        FAULT_FILE: this.file.path,
        FAULT_TABLE: "fault_runs",
        FAULT_CLUSTER: this.cluster,
        FAULT_FENCE: this.options.fence ? "1" : "0",
      },
    });
    this.nodes.set(label, node);
    this.allNodes.push(node);
    return node;
  }

  /** Replaces the node of place `label` (stopped or killed by a fault) by a fresh one. */
  async replaceNode(label: string): Promise<ClusterNode> {
    const old = this.nodes.get(label);
    if (old !== undefined) await this.closeNode(old);
    return this.startNode(label);
  }

  private async closeNode(node: ClusterNode): Promise<void> {
    const left = await node.close();
    if (left.length > 0) this.log(`node ${node.nodeId}: killed processes left behind: ${left.join(", ")}`);
    if (this.nodes.get(node.label) === node) this.nodes.delete(node.label);
  }

  /** Runs the three postmasters by `route` (restarting them if they run by another). */
  async useRoute(route: Route): Promise<void> {
    if (this.route === route && this.nodes.size === LABELS.length && [...this.nodes.values()].every((n) => n.running)) return;
    await this.stopNodes();
    this.route = route;
    this.log(`starting nodes ${LABELS.join(", ")} (${route === "relay" ? "each through its TCP relay" : "each in its network namespace"})`);
    await Promise.all(LABELS.map((label) => this.startNode(label)));
  }

  async stopNodes(): Promise<void> {
    await Promise.all([...this.nodes.values()].map((node) => this.closeNode(node)));
  }

  /** Restores every relay and namespace link (after a failed trial), then restarts the nodes. */
  async reset(): Promise<void> {
    for (const relay of this.relays.values()) relay.resume();
    for (const link of this.links.values()) await link.restore().catch(() => undefined);
    const route = this.route ?? "relay";
    this.route = null;
    await this.useRoute(route);
  }

  /** A query that survives the server's restarts: retried for up to `timeoutMs`. */
  async query<R extends pg.QueryResultRow>(text: string, values: unknown[] = [], timeoutMs = 30_000): Promise<R[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return (await this.pool.query<R>(text, values)).rows;
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await sleep(100);
      }
    }
  }

  /** The lease row of the singleton: holder node id, generation, and how long the server keeps it. */
  async lease(): Promise<{ holder: string | null; generation: bigint; ttlMs: number } | null> {
    const rows = await this.query<{ holder: string | null; generation: string; ttl_ms: number }>(
      `select holder, generation::text as generation, (extract(epoch from expires_at - clock_timestamp()) * 1000)::float8 as ttl_ms ` +
        `from bgworker.cluster_lease where cluster = $1 and worker = $2`,
      [this.cluster, WORKER_NAME],
    ).catch(() => []);
    const row = rows[0];
    return row === undefined ? null : { holder: row.holder, generation: BigInt(row.generation), ttlMs: row.ttl_ms };
  }

  /** Server pids of the cluster sessions, by node id (application_name `bgworker cluster ID`). */
  async clusterSessions(): Promise<Map<string, number>> {
    const rows = await this.query<{ pid: number; application_name: string }>(
      "select pid, application_name from pg_stat_activity where application_name like 'bgworker cluster %'",
    );
    return new Map(rows.map((r) => [r.application_name.slice("bgworker cluster ".length), r.pid]));
  }

  /**
   * Server pids of the sessions enrolled under the lease's current generation that still exist (matched by pid
   * and backend_start, so that a reused pid is never taken for one).
   */
  async enrolledSessions(): Promise<number[]> {
    const rows = await this.query<{ pid: number }>(
      `select a.pid from bgworker.cluster_lease l cross join lateral jsonb_to_recordset(l.sessions) as r(pid integer, backend_start timestamptz) ` +
        `join pg_stat_activity a on a.pid = r.pid and a.backend_start = r.backend_start where l.cluster = $1 and l.worker = $2`,
      [this.cluster, WORKER_NAME],
    );
    return rows.map((r) => r.pid);
  }

  /** Server pids of the singleton's SPI sessions (application_name = its type). */
  async workerSessions(): Promise<number[]> {
    const rows = await this.query<{ pid: number }>("select pid from pg_stat_activity where application_name = $1", [WORKER_NAME]);
    return rows.map((r) => r.pid);
  }

  /**
   * Waits for the steady state (module comment); resolves with the holder, its generation and its worker, or
   * rejects after `timeoutMs` saying what was missing.
   */
  async healthy(timeoutMs: number): Promise<Steady> {
    const deadline = Date.now() + timeoutMs;
    let missing = "nothing checked yet";
    for (;;) {
      const found = await this.steadyOnce().catch((error: Error) => error.message);
      if (typeof found !== "string") return found;
      missing = found;
      if (Date.now() > deadline) throw new Error(`no steady state after ${timeoutMs} ms: ${missing}`);
      await sleep(50);
    }
  }

  /** One look at the steady state: the state, or what is missing. */
  private async steadyOnce(): Promise<Steady | string> {
    const nodes = [...this.nodes.values()];
    if (nodes.length < LABELS.length) return `${nodes.length} nodes run`;
    const down = nodes.find((n) => !n.running);
    if (down !== undefined) return `node ${down.nodeId} has exited`;
    const sessions = await this.clusterSessions();
    const without = nodes.find((n) => !sessions.has(n.nodeId.slice(0, 63 - "bgworker cluster ".length)));
    if (without !== undefined) return `node ${without.nodeId} has no cluster session`;
    const lease = await this.lease();
    if (lease === null || lease.holder === null) return "nobody holds the lease";
    if (lease.ttlMs <= 0) return `the lease of ${lease.holder} has expired`;
    const holder = nodes.find((n) => n.nodeId === lease.holder);
    if (holder === undefined) return `the lease is held by ${lease.holder}, not a running node`;
    // Work flows: three lines of this generation by the holder, written from now on. The last one names
    // the singleton's process (the postmaster logs its start at DEBUG only), checked to be the holder's.
    this.file.poll();
    const from = this.file.lines.length;
    const fresh = await holder.until(() => {
      this.file.poll();
      const mine = this.file.since(from).filter((l) => l.generation === lease.generation && l.node === holder.nodeId);
      return mine.length >= 3 ? mine : undefined;
    }, 2_000);
    if (fresh === undefined) return `the singleton of ${holder.nodeId} (generation ${lease.generation}) writes no lines`;
    const workerPid = fresh[fresh.length - 1]!.pid;
    if (!holder.owns(workerPid)) return `the singleton's process ${workerPid} is not one of ${holder.nodeId}'s`;
    return { holder, generation: lease.generation, workerPid };
  }

  /** `pg_ctl restart -m MODE` of the server, as its OS user. */
  async restartServer(mode: "fast" | "immediate"): Promise<void> {
    const cluster = await Cluster.at(this.pg.pgdata);
    await runAs(cluster.owner, cluster.program("pg_ctl"), ["restart", "-w", "-t", "60", "-m", mode, "-D", this.pg.pgdata, "-l", join(this.pg.pgdata, SERVER_LOG)], {
      timeoutMs: 70_000,
    });
  }

  /** Every committed row of `table`, with commit times when the server tracks them. */
  async rows(table: "fault_runs" | "fault_runs_negative"): Promise<RunRow[]> {
    const committed = this.commitTimestamps ? "(extract(epoch from pg_xact_commit_timestamp(xmin)) * 1000)::float8" : "null::float8";
    const rows = await this.query<{ generation: string; node: string; seq: string; inserted_at: number; committed_at: number | null; pid: number }>(
      `select generation::text as generation, node, seq::text as seq, (extract(epoch from inserted_at) * 1000)::float8 as inserted_at, ` +
        `${committed} as committed_at, pid from ${table} order by seq`,
    );
    return rows.map((r) => ({
      generation: BigInt(r.generation),
      node: r.node,
      seq: BigInt(r.seq),
      insertedAt: r.inserted_at,
      committedAt: r.committed_at,
      pid: r.pid,
    }));
  }

  /**
   * The server's time of the first row of `generation` (ms since the epoch), or of process `pid` from `after`
   * on (a singleton restarted under the same generation), if any.
   */
  async firstRowAt(of: { generation: bigint } | { pid: number; after: number }): Promise<number | undefined> {
    const [where, values] =
      "generation" in of ? ["generation = $1::bigint", [of.generation.toString()]] : ["pid = $1 and inserted_at >= to_timestamp($2::float8 / 1000)", [of.pid, of.after]];
    const rows = await this.query<{ at: number | null }>(`select (extract(epoch from min(inserted_at)) * 1000)::float8 as at from fault_runs where ${where}`, values);
    return rows[0]?.at ?? undefined;
  }

  /** Stops every node, relay and namespace, and the server; removes the temp dir. Never throws; safe twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const relay of this.relays.values()) relay.resume(); // a paused relay would hold a node's shutdown
    for (const link of this.links.values()) await link.restore().catch(() => undefined);
    await this.stopNodes().catch(() => undefined);
    for (const relay of this.relays.values()) await relay.close().catch(() => undefined);
    for (const link of this.links.values()) await link.destroy();
    await this.pool.end().catch(() => undefined);
    await this.pg.stop().catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true });
  }
}
