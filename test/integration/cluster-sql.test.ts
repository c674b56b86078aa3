/**
 * Cluster mode's lease SQL (src/cluster/lease-sql.ts, SPEC §10) against a real throwaway PostgreSQL: every
 * statement run as PostgreSQL runs it, by a role that is neither superuser nor owner of the schema, with one
 * node-postgres Client per session. What it shows: the schema is idempotent and usable by a non-owner with
 * the administrator's grants; the cluster session's settings; acquire, renew (owner-scoped), release with
 * its NOTIFY; a killed holder's lease taken before its expiry; a silent holder's lease taken after it, its
 * sessions terminated first (one that ends by itself meanwhile does not turn the taker away); the fence
 * (WB001, and a takeover waiting for a fenced transaction, whose row commits before G+1 starts; a session
 * enrolled during that wait is ended before G+1); nodes, heartbeats and the status; enrolment refused for a
 * stale token; concurrent acquires granting once.
 *
 * Times are the server's: expiries are compared with the `server_now` the statements return or with the
 * server's clock, never with this host's; waits poll with a bounded deadline.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import {
  acquire,
  ADVISORY_NAMESPACE,
  clusterStatus,
  enrollSession,
  fence,
  grantsFor,
  heartbeat,
  LISTEN,
  registerNode,
  release,
  RELEASE_CHANNEL,
  renew,
  SCHEMA_DDL,
  schemaCheck,
  sessionSettings,
  STALE_TOKEN_SQLSTATE,
  type Statement,
} from "../../src/cluster/lease-sql.js";
import { leaseTimings, type LeaseTimings } from "../../src/cluster/timings.js";
import { createTestCluster, type TestCluster } from "../helpers/cluster.js";

/** A short lease, so that waiting for an expiry costs two seconds. */
const T = leaseTimings({ leaseMs: 2000, renewMs: 500, shutdownTimeoutMs: 1000 });
/** A longer one where a step must fit in acquire's wait for a lock (a third of the lease). */
const T_LONG = leaseTimings({ leaseMs: 6000, renewMs: 1000, shutdownTimeoutMs: 1000 });
const CLUSTER = "itest";
/** The nodes' and workers' role: LOGIN only, no CREATE on the database, not the schema's owner. */
const ROLE = "bgw_node";
/** How long any wait for the server may take before the test fails (the expected waits are far shorter). */
const PATIENT_MS = 15_000;

let server: TestCluster | undefined;
let admin: pg.Client;

interface Session {
  readonly label: string;
  readonly client: pg.Client;
  /** The session's server process. */
  readonly pid: number;
  /** Errors the client emitted outside a query (a terminated session's FATAL, a lost connection). */
  readonly errors: Error[];
  readonly notifications: pg.Notification[];
  ended: boolean;
}

const sessions: Session[] = [];

async function connect(label: string, options: { user?: string; database?: string } = {}): Promise<Session> {
  if (server === undefined) throw new Error("no server");
  const client = new pg.Client({ ...server.params, user: options.user ?? ROLE, database: options.database ?? server.params.database, application_name: label });
  const errors: Error[] = [];
  const notifications: pg.Notification[] = [];
  client.on("error", (error) => errors.push(error));
  client.on("notification", (n) => notifications.push(n));
  await client.connect();
  const pid = ((await client.query("SELECT pg_backend_pid() AS pid")).rows[0] as { pid: number }).pid;
  const session: Session = { label, client, pid, errors, notifications, ended: false };
  client.on("end", () => (session.ended = true));
  sessions.push(session);
  return session;
}

/** A node's cluster session: the node role, with sessionSettings applied as the shell applies them. */
async function nodeSession(nodeId: string, timings: LeaseTimings = T): Promise<Session> {
  const session = await connect(`node ${nodeId}`);
  await run(session, sessionSettings(timings, nodeId));
  return session;
}

async function run<R = Record<string, unknown>>(session: Session, statement: Statement): Promise<R[]> {
  return (await session.client.query(statement.text, [...statement.values])).rows as R[];
}

async function adminRows<R = Record<string, unknown>>(text: string, values: unknown[] = []): Promise<R[]> {
  return (await admin.query(text, values)).rows as R[];
}

/** Polls `probe` until it returns something other than undefined; fails after PATIENT_MS. */
async function until<R>(what: string, probe: () => Promise<R | undefined>, everyMs = 20): Promise<R> {
  const deadline = performance.now() + PATIENT_MS;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** The server's clock now, in ms since the epoch. */
async function serverNow(): Promise<number> {
  return (await adminRows<{ now: number }>("SELECT (extract(epoch from clock_timestamp()) * 1000)::float8 AS now"))[0]!.now;
}

/** Waits until the server's clock has passed `ms` (an expiry the statements returned). */
async function untilServerPasses(ms: number): Promise<number> {
  return until(`the server's clock to pass ${ms}`, async () => {
    const now = await serverNow();
    return now > ms ? now : undefined;
  }, 50);
}

async function alive(pid: number): Promise<boolean> {
  return (await adminRows("SELECT 1 FROM pg_stat_activity WHERE pid = $1", [pid])).length > 0;
}

interface LeaseRow {
  id: number;
  generation: string;
  holder: string | null;
  holder_pid: number | null;
  sessions: { pid: number; backend_start: string }[];
  expires_at: number;
  acquired_at: number | null;
}

async function leaseRow(worker: string, cluster = CLUSTER): Promise<LeaseRow> {
  const rows = await adminRows<LeaseRow>(
    "SELECT id, generation::text AS generation, holder, holder_pid, sessions, (extract(epoch from expires_at) * 1000)::float8 AS expires_at, " +
      "(extract(epoch from acquired_at) * 1000)::float8 AS acquired_at FROM bgworker.cluster_lease WHERE cluster = $1 AND worker = $2",
    [cluster, worker],
  );
  assert.equal(rows.length, 1, `one lease row for ${cluster}/${worker}`);
  return rows[0]!;
}

/** The sessions holding the advisory lock of a worker's lease. */
async function lockHolders(worker: string, cluster = CLUSTER): Promise<number[]> {
  const rows = await adminRows<{ pid: number }>(
    "SELECT k.pid FROM pg_locks k JOIN bgworker.cluster_lease l ON k.objid = l.id::oid " +
      "WHERE k.locktype = 'advisory' AND k.classid = $1::oid AND k.objsubid = 2 AND k.granted AND l.cluster = $2 AND l.worker = $3 ORDER BY k.pid",
    [ADVISORY_NAMESPACE, cluster, worker],
  );
  return rows.map((r) => r.pid);
}

interface Acquired {
  outcome: "acquired" | "busy";
  generation: string;
  holder: string | null;
  server_now: number;
  expires_at: number;
  backend_pid: number;
}

async function acquireAs(session: Session, worker: string, nodeId: string, timings: LeaseTimings = T, cluster = CLUSTER): Promise<Acquired> {
  const rows = await run<Acquired>(session, acquire(cluster, worker, nodeId, timings));
  assert.equal(rows.length, 1, "acquire answers one row");
  return rows[0]!;
}

/** Closes a session's socket abruptly, as a killed process's kernel does: no Terminate message. */
function cutOff(session: Session): void {
  session.client.connection.stream.destroy();
}

/** The SQLSTATE of a rejection. */
async function sqlstate(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (error) {
    return (error as { code?: string }).code;
  }
  assert.fail("expected the statement to fail");
}

before(async () => {
  // track_commit_timestamp: the fence test compares a commit's time with the next generation's grant.
  server = await createTestCluster({ settings: { track_commit_timestamp: true } });
  admin = new pg.Client({ ...server.params, application_name: "admin" });
  admin.on("error", () => undefined);
  await admin.connect();
  await admin.query(`CREATE ROLE ${ROLE} LOGIN`);
  // The served database: the schema made by an administrator, as test 1 shows step by step on a database of its own.
  await admin.query(SCHEMA_DDL);
  for (const grant of grantsFor(ROLE)) await admin.query(grant);
  // A worker's own table, written in fenced transactions.
  await admin.query("CREATE TABLE public.effects (worker text NOT NULL, generation bigint NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())");
  await admin.query(`GRANT SELECT, INSERT ON public.effects TO ${ROLE}`);
});

after(async () => {
  for (const session of sessions) {
    if (!session.ended) await session.client.end().catch(() => undefined);
  }
  await admin?.end().catch(() => undefined);
  await server?.stop();
});

describe("cluster lease SQL on PostgreSQL", () => {
  test("1. the schema: idempotent, made by an administrator, usable by a role with no CREATE and only the documented grants", async () => {
    const db = "admin_made";
    await admin.query(`CREATE DATABASE ${db}`);
    const owner = new pg.Client({ ...server!.params, database: db, application_name: "admin of admin_made" });
    owner.on("error", () => undefined);
    await owner.connect();
    try {
      const node = await connect("node without grants", { database: db });
      assert.equal((await node.client.query("SELECT has_database_privilege(current_database(), 'CREATE') AS c")).rows[0].c, false);
      assert.equal((await node.client.query("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).rows[0].rolsuper, false);

      // Without CREATE on the database, a node cannot make the schema, nor run the DDL once it exists: the
      // IF NOT EXISTS comes after the permission check. Such a node must ask schemaCheck() first.
      assert.equal(await sqlstate(node.client.query(SCHEMA_DDL)), "42501");
      assert.deepEqual(await run(node, schemaCheck()), [{ present: false, usable: false }]);

      await owner.query(SCHEMA_DDL);
      await owner.query(SCHEMA_DDL);
      const objects = (await owner.query(
        "SELECT (SELECT count(*)::int FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'bgworker' AND c.relkind = 'r') AS tables, " +
          "(SELECT count(*)::int FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'bgworker') AS functions",
      )).rows[0];
      assert.deepEqual(objects, { tables: 2, functions: 2 }, "run twice, made once");

      assert.deepEqual(await run(node, schemaCheck()), [{ present: true, usable: false }]);
      assert.equal(await sqlstate(node.client.query(SCHEMA_DDL)), "42501", "the DDL stays the administrator's");
      assert.equal(await sqlstate(run(node, acquire(CLUSTER, "w1", "node-1", T))), "42501", "no USAGE on the schema yet");

      for (const grant of grantsFor(ROLE)) await owner.query(grant);
      assert.deepEqual(await run(node, schemaCheck()), [{ present: true, usable: true }]);

      // Every statement, as the node role (a first acquire also inserts the row: its identity needs no grant).
      await run(node, sessionSettings(T, "node-1"));
      await run(node, { text: LISTEN, values: [] });
      const a = await acquireAs(node, "w1", "node-1", T);
      assert.equal(a.outcome, "acquired");
      assert.equal(a.generation, "1");
      assert.equal((await run(node, renew(CLUSTER, "w1", "node-1", 1n, T))).length, 1);
      const worker = await connect("worker of w1", { database: db });
      assert.deepEqual(await run(worker, enrollSession(CLUSTER, "w1", 1n)), [{ generation: "1" }]);
      await worker.client.query("BEGIN");
      assert.deepEqual((await run(worker, fence(CLUSTER, "w1", 1n))).map((r) => Object.values(r)), [["1"]]);
      await worker.client.query("COMMIT");
      assert.deepEqual(await run(node, registerNode(CLUSTER, "node-1", "host-1", 4242)), [{ node_id: "node-1" }]);
      assert.equal((await run(node, heartbeat(CLUSTER, "node-1"))).length, 1);
      assert.equal((await run(node, clusterStatus(CLUSTER))).length, 1);
      assert.equal((await run(node, release(CLUSTER, "w1", "node-1", 1n))).length, 1);

      // The DDL run again by the administrator keeps the rows and the grants.
      await owner.query(SCHEMA_DDL);
      const again = await acquireAs(node, "w1", "node-1", T);
      assert.equal(again.outcome, "acquired");
      assert.equal(again.generation, "2", "the generation survived the DDL");
      await run(node, release(CLUSTER, "w1", "node-1", 2n));
      await node.client.end();
      await worker.client.end();
    } finally {
      await owner.end();
    }
  });

  test("2. sessionSettings applies the cluster session's settings and returns its backend pid", async () => {
    const timings = leaseTimings({ leaseMs: 1500, renewMs: 300, shutdownTimeoutMs: 1000 });
    const s = await connect("settings");
    const rows = await run<{ backend_pid: number }>(s, sessionSettings(timings, "node-settings"));
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.backend_pid, s.pid);
    const show = async (name: string): Promise<string> => ((await s.client.query(`SHOW ${name}`)).rows[0] as Record<string, string>)[name]!;
    // As SHOW prints them (the tcp_* settings without their unit), and in pg_settings' units.
    assert.equal(await show("application_name"), "bgworker cluster node-settings");
    assert.equal(await show("tcp_keepalives_idle"), "2", "the lease in seconds, rounded up");
    assert.equal(await show("tcp_keepalives_interval"), "1");
    assert.equal(await show("tcp_keepalives_count"), "1");
    assert.equal(await show("tcp_user_timeout"), "1500");
    assert.equal(await show("idle_session_timeout"), "1500ms");
    assert.equal(await show("statement_timeout"), "1500ms");
    const settings = await s.client.query(
      "SELECT name, setting, unit FROM pg_settings WHERE name IN ('tcp_keepalives_idle', 'tcp_keepalives_interval', 'tcp_keepalives_count', " +
        "'tcp_user_timeout', 'idle_session_timeout', 'statement_timeout') ORDER BY name",
    );
    assert.deepEqual(settings.rows, [
      { name: "idle_session_timeout", setting: "1500", unit: "ms" },
      { name: "statement_timeout", setting: "1500", unit: "ms" },
      { name: "tcp_keepalives_count", setting: "1", unit: null },
      { name: "tcp_keepalives_idle", setting: "2", unit: "s" },
      { name: "tcp_keepalives_interval", setting: "1", unit: "s" },
      { name: "tcp_user_timeout", setting: "1500", unit: "ms" },
    ]);
    await s.client.end();
  });

  test("3. acquire: an empty lease is granted at generation 1 for leaseMs by the server's clock; a second node is told who holds it", async () => {
    const worker = "w3";
    const a = await nodeSession("node-a");
    const b = await nodeSession("node-b");
    const before = await serverNow();
    const got = await acquireAs(a, worker, "node-a");
    assert.equal(got.outcome, "acquired");
    assert.equal(got.generation, "1");
    assert.equal(got.holder, "node-a");
    assert.equal(got.backend_pid, a.pid);
    assert.ok(got.server_now >= before, "server_now is the server's clock at the grant");
    assert.ok(Math.abs(got.expires_at - got.server_now - T.leaseMs) < 0.01, `expires ${got.expires_at - got.server_now} ms after server_now`);

    const busy = await acquireAs(b, worker, "node-b");
    assert.equal(busy.outcome, "busy");
    assert.equal(busy.holder, "node-a");
    assert.equal(busy.generation, "1");
    assert.equal(busy.backend_pid, b.pid);
    assert.ok(Math.abs(busy.expires_at - got.expires_at) < 0.01, "the holder's expiry");
    assert.ok(busy.server_now < busy.expires_at);

    assert.deepEqual(await lockHolders(worker), [a.pid], "the holder's session holds the lease's advisory lock, and only it");
    const row = await leaseRow(worker);
    assert.equal(row.holder, "node-a");
    assert.equal(row.holder_pid, a.pid);
    assert.equal(row.generation, "1");

    // The holder's own session may take it again (a node does after giving a lease up while its session
    // lives): the next generation, one advisory lock (taken once), which one release gives back.
    const again = await acquireAs(a, worker, "node-a");
    assert.equal(again.outcome, "acquired");
    assert.equal(again.generation, "2");
    assert.deepEqual(await lockHolders(worker), [a.pid]);
    assert.equal((await run(a, release(CLUSTER, worker, "node-a", 2n))).length, 1);
    assert.deepEqual(await lockHolders(worker), [], "taken once, given back once");
    await a.client.end();
    await b.client.end();
  });

  test("4. renew extends the holder's expiry; a wrong generation, node or session extends nothing", async () => {
    const worker = "w4";
    const a = await nodeSession("node-a");
    const b = await nodeSession("node-b");
    const got = await acquireAs(a, worker, "node-a");
    assert.equal(got.outcome, "acquired");

    const renewed = await run<{ generation: string; server_now: number; expires_at: number; backend_pid: number }>(a, renew(CLUSTER, worker, "node-a", 1n, T));
    assert.equal(renewed.length, 1);
    assert.equal(renewed[0]!.generation, "1");
    assert.equal(renewed[0]!.backend_pid, a.pid);
    assert.ok(renewed[0]!.expires_at > got.expires_at, "extended");
    assert.ok(Math.abs(renewed[0]!.expires_at - renewed[0]!.server_now - T.leaseMs) < 0.01, "to the server's now plus the lease");
    const expires = (await leaseRow(worker)).expires_at;
    assert.ok(Math.abs(expires - renewed[0]!.expires_at) < 0.01);

    assert.deepEqual(await run(a, renew(CLUSTER, worker, "node-a", 2n, T)), [], "a wrong generation");
    assert.deepEqual(await run(a, renew(CLUSTER, worker, "node-a", 0n, T)), [], "an older generation");
    assert.deepEqual(await run(a, renew(CLUSTER, worker, "node-b", 1n, T)), [], "another node's name");
    assert.deepEqual(await run(b, renew(CLUSTER, worker, "node-a", 1n, T)), [], "the holder's name and generation, from another session");
    assert.deepEqual(await run(b, renew(CLUSTER, worker, "node-b", 1n, T)), [], "another node on its own session");
    assert.equal((await leaseRow(worker)).expires_at, expires, "no refused renewal moved the expiry");
    await run(a, release(CLUSTER, worker, "node-a", 1n));
    await a.client.end();
    await b.client.end();
  });

  test("5. release frees the row, gives the lock back and NOTIFYs the other nodes; the next grant is generation 2", async () => {
    const worker = "w5";
    const a = await nodeSession("node-a");
    const b = await nodeSession("node-b");
    await run(b, { text: LISTEN, values: [] });
    const got = await acquireAs(a, worker, "node-a");
    assert.equal(got.outcome, "acquired");

    assert.deepEqual(await run(a, release(CLUSTER, worker, "node-a", 2n)), [], "another generation releases nothing");
    assert.deepEqual(await run(b, release(CLUSTER, worker, "node-a", 1n)), [], "another session releases nothing");
    assert.deepEqual(await lockHolders(worker), [a.pid]);

    const released = await run<{ generation: string; unlocked: boolean }>(a, release(CLUSTER, worker, "node-a", 1n));
    assert.equal(released.length, 1);
    assert.equal(released[0]!.generation, "1");
    assert.equal(released[0]!.unlocked, true);
    const row = await leaseRow(worker);
    assert.equal(row.holder, null);
    assert.equal(row.holder_pid, null);
    assert.deepEqual(row.sessions, []);
    assert.equal(row.generation, "1", "the generation stays");
    assert.ok(row.expires_at <= (await serverNow()));
    assert.deepEqual(await lockHolders(worker), [], "the lock is given back");

    const note = await until("the release's NOTIFY", async () => b.notifications.find((n) => n.channel === RELEASE_CHANNEL));
    assert.deepEqual(JSON.parse(note.payload!), { cluster: CLUSTER, worker, node: "node-a", generation: "1" });

    const next = await acquireAs(b, worker, "node-b");
    assert.equal(next.outcome, "acquired");
    assert.equal(next.generation, "2");
    assert.deepEqual(await lockHolders(worker), [b.pid]);
    await run(b, release(CLUSTER, worker, "node-b", 2n));
    await a.client.end();
    await b.client.end();
  });

  test("6. a killed holder's lease is taken before its expiry: its session, and its lock, end with its socket", async () => {
    const worker = "w6";
    const a = await nodeSession("node-a");
    const b = await nodeSession("node-b");
    const got = await acquireAs(a, worker, "node-a");
    assert.equal(got.outcome, "acquired");
    assert.equal((await acquireAs(b, worker, "node-b")).outcome, "busy");

    cutOff(a);
    const taken = await until("node-b to take the lease", async () => {
      const r = await acquireAs(b, worker, "node-b");
      return r.outcome === "acquired" ? r : undefined;
    });
    assert.equal(taken.generation, "2");
    assert.ok(taken.server_now < got.expires_at, `taken ${got.expires_at - taken.server_now} ms before the old lease's expiry`);
    assert.equal(await alive(a.pid), false);
    assert.deepEqual(await lockHolders(worker), [b.pid]);
    await run(b, release(CLUSTER, worker, "node-b", 2n));
    await b.client.end();
  });

  test("7. a silent holder's lease is taken after its expiry by the server's clock; its sessions are terminated first and its open transaction never commits", async () => {
    const worker = "w7";
    const a = await nodeSession("node-a");
    // A holder whose kernel still answers keepalives and that sends nothing. idle_session_timeout (the lease)
    // would end such a session by itself at about the expiry; off here, so that the taker's terminate is shown.
    await a.client.query("SET idle_session_timeout = 0");
    const got = await acquireAs(a, worker, "node-a");
    assert.equal(got.outcome, "acquired");
    assert.equal(got.generation, "1");

    // The worker of generation 1: its session enrolled, a fenced transaction open with a row written.
    const w = await connect("worker of w7 gen 1");
    assert.deepEqual(await run(w, enrollSession(CLUSTER, worker, 1n)), [{ generation: "1" }]);
    await w.client.query("BEGIN");
    await run(w, fence(CLUSTER, worker, 1n));
    await w.client.query("INSERT INTO effects (worker, generation) VALUES ($1, 1)", [worker]);

    // Another node, while the lease is unexpired: busy. (A waiting node polls every renewMs; this one is
    // closed rather than left idle past its own idle_session_timeout while the test waits for the expiry.)
    const early = await nodeSession("node-b");
    const busy = await acquireAs(early, worker, "node-b");
    assert.equal(busy.outcome, "busy", "unexpired, its lock held");
    assert.ok(busy.server_now < got.expires_at);
    await early.client.end();

    const expired = await untilServerPasses(got.expires_at);
    assert.ok(expired > got.expires_at);
    assert.deepEqual(await run(a, renew(CLUSTER, worker, "node-a", 1n, T)), [], "a renewal after the expiry is refused");
    assert.equal(await alive(a.pid), true, "the silent holder's session is still there");
    assert.equal(await alive(w.pid), true);
    const late = await connect("late fence of w7");
    await late.client.query("BEGIN");
    assert.equal(await sqlstate(run(late, fence(CLUSTER, worker, 1n))), STALE_TOKEN_SQLSTATE, "an expired lease fences its own generation");
    await late.client.query("ROLLBACK");

    const b = await nodeSession("node-b");
    const taken = await acquireAs(b, worker, "node-b");
    assert.equal(taken.outcome, "acquired");
    assert.equal(taken.generation, "2");
    assert.ok(taken.server_now > got.expires_at);
    // acquire waited for each termination: both sessions are gone when it answers.
    assert.equal(await alive(a.pid), false, "the old holder's cluster session was terminated");
    assert.equal(await alive(w.pid), false, "the enrolled worker session was terminated");
    for (const s of [a, w]) {
      const fatal = await until(`${s.label} to hear of its termination`, async () => s.errors[0]);
      assert.equal((fatal as pg.DatabaseError).code, "57P01", `${s.label}: ${fatal.message}`); // terminating connection due to administrator command
    }
    assert.deepEqual(await adminRows("SELECT * FROM effects WHERE worker = $1", [worker]), [], "generation 1's open transaction never committed");
    const row = await leaseRow(worker);
    assert.equal(row.holder, "node-b");
    assert.equal(row.holder_pid, b.pid);
    assert.deepEqual(row.sessions, []);
    assert.deepEqual(await lockHolders(worker), [b.pid]);
    await run(b, release(CLUSTER, worker, "node-b", 2n));
    await b.client.end();
    await late.client.end();
  });

  test("7b. a session of generation G that ends by itself while acquire waits for another to go does not turn the takeover away", async (t) => {
    const worker = "w7b";
    const a = await nodeSession("node-a");
    try {
      process.kill(a.pid, 0);
    } catch {
      return t.skip("this process may not signal the server's processes"); // root, or the server's own user
    }
    await a.client.query("SET idle_session_timeout = 0"); // silent, as in 7
    const got = await acquireAs(a, worker, "node-a");
    const w = await connect("worker of w7b gen 1");
    assert.deepEqual(await run(w, enrollSession(CLUSTER, worker, 1n)), [{ generation: "1" }]);
    await untilServerPasses(got.expires_at);

    // The old holder's server process stopped (SIGSTOP): acquire's terminate of it waits, up to a third of
    // the taker's lease. Meanwhile the worker's session of generation 1 ends by itself.
    process.kill(a.pid, "SIGSTOP");
    try {
      const b = await nodeSession("node-b", T_LONG);
      const taking = acquireAs(b, worker, "node-b", T_LONG);
      await until("the taker to wait for the old holder's session to end", async () => {
        const rows = await adminRows("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'BackendTermination'", [b.pid]);
        return rows.length > 0 ? true : undefined;
      }, 10);
      await w.client.end();
      await until("the worker's session to end", async () => ((await alive(w.pid)) ? undefined : true), 10);
      process.kill(a.pid, "SIGCONT");
      const taken = await taking;
      assert.equal(taken.outcome, "acquired", "a session already gone counts as terminated");
      assert.equal(taken.generation, "2");
      assert.equal(await alive(a.pid), false);
      await run(b, release(CLUSTER, worker, "node-b", 2n));
      await b.client.end();
    } finally {
      try {
        process.kill(a.pid, "SIGCONT");
      } catch {
        // gone
      }
    }
  });

  describe("8. the fence", () => {
    test("passes for the current generation inside a transaction, fails with WB001 naming the worker otherwise", async () => {
      const worker = "w8a";
      const a = await nodeSession("node-a");
      assert.equal((await acquireAs(a, worker, "node-a")).outcome, "acquired");
      const w = await connect("worker of w8a");
      await w.client.query("BEGIN");
      const ok = await run<{ fence: string }>(w, fence(CLUSTER, worker, 1n));
      assert.deepEqual(ok, [{ fence: "1" }]);
      // Its FOR KEY SHARE holds until the transaction ends; the holder's renewal does not wait for it.
      assert.equal((await run(a, renew(CLUSTER, worker, "node-a", 1n, T))).length, 1, "renewed while the fence is held");
      await w.client.query("COMMIT");

      for (const stale of [0n, 2n]) {
        await w.client.query("BEGIN");
        const error = await w.client.query(fence(CLUSTER, worker, stale).text, [...fence(CLUSTER, worker, stale).values]).then(
          () => assert.fail("a wrong token passed the fence"),
          (e: pg.DatabaseError) => e,
        );
        assert.equal(error.code, STALE_TOKEN_SQLSTATE);
        assert.equal(error.message, `fencing token ${stale} of cluster worker "${worker}" is stale`);
        assert.match(error.detail ?? "", new RegExp(`^the lease of cluster "${CLUSTER}" is at generation 1, held by node-a until `));
        assert.equal(error.hint, "this worker no longer holds its lease; it is being stopped");
        await w.client.query("ROLLBACK");
      }
      await w.client.query("BEGIN");
      const missing = await sqlstate(run(w, fence(CLUSTER, "no-such-worker", 1n)));
      assert.equal(missing, STALE_TOKEN_SQLSTATE, "a worker with no lease");
      await w.client.query("ROLLBACK");
      await run(a, release(CLUSTER, worker, "node-a", 1n));
      await a.client.end();
      await w.client.end();
    });

    test("a takeover waits for a transaction that passed the fence, or gives up after its lock_timeout; G's commit lands before G+1 starts", async () => {
      const worker = "w8b";
      const terminateMs = Number(acquire(CLUSTER, worker, "x", T_LONG).values[4]);
      const a = await nodeSession("node-a", T_LONG);
      const b = await nodeSession("node-b", T_LONG);
      const got = await acquireAs(a, worker, "node-a", T_LONG);
      assert.equal(got.outcome, "acquired");

      // A worker session of generation 1 that is not enrolled (so not terminated: a pooled one, say) in a
      // fenced transaction. The holder dies: its lock is gone, the lease free before its expiry.
      const w = await connect("worker of w8b gen 1");
      await w.client.query("BEGIN");
      await run(w, fence(CLUSTER, worker, 1n));
      cutOff(a);
      await until("the dead holder's lock to go", async () => ((await lockHolders(worker)).length === 0 ? true : undefined));

      // While the fenced transaction stays open longer than acquire's lock_timeout: busy, lock given back.
      const start = await serverNow();
      const busy = await acquireAs(b, worker, "node-b", T_LONG);
      assert.equal(busy.outcome, "busy");
      assert.equal(busy.generation, "1");
      assert.ok(busy.server_now - start >= terminateMs - 1, `gave up after ${busy.server_now - start} ms (lock_timeout ${terminateMs})`);
      assert.deepEqual(await lockHolders(worker), [], "the taker gave its advisory lock back");
      assert.equal((await leaseRow(worker)).generation, "1");

      // Again: the taker waits on the row lock; the transaction of generation 1 writes and commits; then G+1.
      const taking = acquireAs(b, worker, "node-b", T_LONG);
      await until("the taker to wait for the fenced transaction", async () => {
        const rows = await adminRows("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'", [b.pid]);
        return rows.length > 0 ? true : undefined;
      }, 10);
      await w.client.query("INSERT INTO effects (worker, generation) VALUES ($1, 1)", [worker]);
      await w.client.query("COMMIT");
      const taken = await taking;
      assert.equal(taken.outcome, "acquired");
      assert.equal(taken.generation, "2");
      const committed = await adminRows<{ committed_at: number; acquired_at: number }>(
        "SELECT (extract(epoch from pg_xact_commit_timestamp(e.xmin)) * 1000)::float8 AS committed_at, " +
          "(extract(epoch from l.acquired_at) * 1000)::float8 AS acquired_at FROM effects e, bgworker.cluster_lease l " +
          "WHERE e.worker = $1 AND e.generation = 1 AND l.cluster = $2 AND l.worker = $1",
        [worker, CLUSTER],
      );
      assert.equal(committed.length, 1, "generation 1's row committed");
      assert.ok(committed[0]!.committed_at < committed[0]!.acquired_at, "generation 1 committed before generation 2 was granted");
      assert.ok(Math.abs(committed[0]!.acquired_at - taken.server_now) < 0.01);

      // After G+1: generation 1 cannot pass the fence, so it commits nothing more.
      await w.client.query("BEGIN");
      const error = await w.client.query(fence(CLUSTER, worker, 1n).text, [...fence(CLUSTER, worker, 1n).values]).then(
        () => assert.fail("a stale token passed the fence"),
        (e: pg.DatabaseError) => e,
      );
      assert.equal(error.code, STALE_TOKEN_SQLSTATE);
      assert.equal(error.message, `fencing token 1 of cluster worker "${worker}" is stale`);
      assert.match(error.detail ?? "", /is at generation 2, held by node-b until /);
      await w.client.query("ROLLBACK");
      await run(b, release(CLUSTER, worker, "node-b", 2n));
      await b.client.end();
      await w.client.end();
    });

    test("a session that enrols under G while a takeover waits for a fenced transaction is terminated before G+1 is granted", async () => {
      const worker = "w8c";
      const a = await nodeSession("node-a", T_LONG);
      const b = await nodeSession("node-b", T_LONG);
      assert.equal((await acquireAs(a, worker, "node-a", T_LONG)).outcome, "acquired");
      const w1 = await connect("fenced worker of w8c gen 1");
      await w1.client.query("BEGIN");
      await run(w1, fence(CLUSTER, worker, 1n));
      cutOff(a);
      await until("the dead holder's lock to go", async () => ((await lockHolders(worker)).length === 0 ? true : undefined));

      const taking = acquireAs(b, worker, "node-b", T_LONG);
      await until("the taker to wait for the fenced transaction", async () => {
        const rows = await adminRows("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'", [b.pid]);
        return rows.length > 0 ? true : undefined;
      }, 10);
      // Meanwhile a session of generation 1 enrols: its update passes both the fenced transaction's FOR KEY
      // SHARE and the waiting taker, so it is recorded after the taker read the sessions to terminate.
      const w2 = await connect("late worker of w8c gen 1");
      assert.deepEqual(await run(w2, enrollSession(CLUSTER, worker, 1n)), [{ generation: "1" }]);
      await w1.client.query("COMMIT");

      const first = await taking;
      assert.equal(first.outcome, "busy", "the compare-and-set saw a session it had not ended: try again");
      assert.equal(await alive(w2.pid), true);
      const taken = await until("node-b to take the lease", async () => {
        const r = await acquireAs(b, worker, "node-b", T_LONG);
        return r.outcome === "acquired" ? r : undefined;
      });
      assert.equal(taken.generation, "2");
      assert.equal(await alive(w2.pid), false, "the session enrolled under generation 1 was terminated before generation 2 was granted");
      await run(b, release(CLUSTER, worker, "node-b", 2n));
      await b.client.end();
      await w1.client.end();
    });
  });

  test("9. nodes: one live session per node id, heartbeats and the cluster status by the server's clock", async () => {
    const cluster = "status-test";
    const n1 = await connect("node-r first");
    const n2 = await connect("node-r second");
    assert.deepEqual(await run(n1, registerNode(cluster, "node-r", "host-1", 101)), [{ node_id: "node-r" }]);
    assert.deepEqual(await run(n1, registerNode(cluster, "node-r", "host-1", 101)), [{ node_id: "node-r" }], "its own session may register again");
    assert.deepEqual(await run(n2, registerNode(cluster, "node-r", "host-2", 202)), [], "a live node has that id");
    assert.deepEqual(await run(n2, heartbeat(cluster, "node-r")), [], "only the node's session heartbeats");

    const beat = await run<{ server_now: number }>(n1, heartbeat(cluster, "node-r"));
    assert.equal(beat.length, 1);
    const row = (await adminRows<{ backend_pid: number; heartbeat_at: number; host: string }>(
      "SELECT backend_pid, host, (extract(epoch from heartbeat_at) * 1000)::float8 AS heartbeat_at FROM bgworker.cluster_node WHERE cluster = $1 AND node_id = $2",
      [cluster, "node-r"],
    ))[0]!;
    assert.equal(row.backend_pid, n1.pid);
    assert.equal(row.host, "host-1");
    assert.ok(Math.abs(row.heartbeat_at - beat[0]!.server_now) < 0.01, "heartbeat_at is the server_now returned");

    // A lease and a node whose session is gone, for the status.
    const holder = await nodeSession("node-r");
    assert.equal((await acquireAs(holder, "w9", "node-r", T, cluster)).outcome, "acquired");
    const gone = await connect("node-gone");
    assert.deepEqual(await run(gone, registerNode(cluster, "node-gone", "host-3", 303)), [{ node_id: "node-gone" }]);
    await gone.client.end();

    interface Status {
      server_now: number;
      nodes: { nodeId: string; host: string; pid: number; heartbeatAt: number; live: boolean }[];
      leases: { worker: string; holder: string | null; generation: string; expiresAt: number }[];
    }
    const status = await until("the gone node's session to be gone", async () => {
      const s = (await run<Status>(n2, clusterStatus(cluster)))[0]!;
      return s.nodes.find((n) => n.nodeId === "node-gone")?.live === false ? s : undefined;
    });
    assert.ok(status.server_now >= beat[0]!.server_now);
    assert.deepEqual(status.nodes.map(({ heartbeatAt: _, ...n }) => n), [
      { nodeId: "node-gone", host: "host-3", pid: 303, live: false },
      { nodeId: "node-r", host: "host-1", pid: 101, live: true },
    ]);
    assert.ok(Math.abs(status.nodes[1]!.heartbeatAt - beat[0]!.server_now) < 0.01);
    assert.equal(status.leases.length, 1);
    const lease = status.leases[0]!;
    assert.deepEqual({ worker: lease.worker, holder: lease.holder, generation: lease.generation }, { worker: "w9", holder: "node-r", generation: "1" });
    assert.ok(lease.expiresAt > status.server_now);
    assert.deepEqual((await run<Status>(n2, clusterStatus("no-such-cluster")))[0]!.nodes, [], "an empty cluster: empty lists");

    // The first session ends: the id is free for a new session (a restarted node).
    await n1.client.end();
    const taken = await until("node-r's id to be free", async () => {
      const rows = await run(n2, registerNode(cluster, "node-r", "host-2", 202));
      return rows.length === 1 ? rows : undefined;
    });
    assert.deepEqual(taken, [{ node_id: "node-r" }]);
    assert.equal((await run(n2, heartbeat(cluster, "node-r"))).length, 1);
    const after = (await run<Status>(n2, clusterStatus(cluster)))[0]!;
    assert.deepEqual(after.nodes.find((n) => n.nodeId === "node-r"), { nodeId: "node-r", host: "host-2", pid: 202, live: true, heartbeatAt: after.nodes.find((n) => n.nodeId === "node-r")!.heartbeatAt });
    await run(holder, release(CLUSTER, "w9", "node-r", 1n));
    await holder.client.end();
    await n2.client.end();
  });

  test("10. enrolment: only under the lease's current, held, unexpired generation", async () => {
    const worker = "w10";
    const a = await nodeSession("node-a");
    const b = await nodeSession("node-b");
    assert.equal((await acquireAs(a, worker, "node-a")).outcome, "acquired");
    const w = await connect("worker of w10");
    assert.deepEqual(await run(w, enrollSession(CLUSTER, worker, 2n)), [], "a generation not granted yet");
    assert.deepEqual(await run(w, enrollSession(CLUSTER, worker, 0n)), [], "an older generation");
    assert.deepEqual(await run(w, enrollSession(CLUSTER, "no-such-worker", 1n)), [], "no lease");
    assert.deepEqual(await run(w, enrollSession(CLUSTER, worker, 1n)), [{ generation: "1" }]);
    const recorded = await adminRows<{ matches: boolean }>(
      "SELECT EXISTS (SELECT 1 FROM bgworker.cluster_lease l, jsonb_to_recordset(l.sessions) AS r(pid integer, backend_start timestamptz) " +
        "JOIN pg_stat_activity a ON a.pid = r.pid AND a.backend_start = r.backend_start WHERE l.cluster = $1 AND l.worker = $2 AND r.pid = $3) AS matches",
      [CLUSTER, worker, w.pid],
    );
    assert.deepEqual(recorded, [{ matches: true }], "recorded with its backend_start, as pg_stat_activity has it");

    // A worker restarted under the same lease enrols its new session; the ended one is dropped from the list.
    await w.client.end();
    await until("the first worker session gone", async () => ((await alive(w.pid)) ? undefined : true));
    const restarted = await connect("restarted worker of w10");
    assert.deepEqual(await run(restarted, enrollSession(CLUSTER, worker, 1n)), [{ generation: "1" }]);
    assert.deepEqual((await leaseRow(worker)).sessions.map((e) => e.pid), [restarted.pid], "only the live session is listed");

    await run(a, release(CLUSTER, worker, "node-a", 1n));
    const w2 = await connect("late worker of w10");
    assert.deepEqual(await run(w2, enrollSession(CLUSTER, worker, 1n)), [], "a released lease");
    assert.equal((await acquireAs(b, worker, "node-b")).generation, "2");
    assert.deepEqual(await run(w2, enrollSession(CLUSTER, worker, 1n)), [], "a stale generation");
    assert.deepEqual(await run(w2, enrollSession(CLUSTER, worker, 2n)), [{ generation: "2" }]);
    await run(b, release(CLUSTER, worker, "node-b", 2n));
    for (const s of [a, b, restarted, w2]) await s.client.end();
  });

  test("11. concurrent acquires of one lease: exactly one is granted, whether its row is new or released", async () => {
    const worker = "w11";
    const ids = ["node-a", "node-b", "node-c"];
    const nodes = await Promise.all(ids.map((id) => nodeSession(id)));
    for (const generation of ["1", "2"]) {
      const answers = await Promise.all(nodes.map((s, i) => acquireAs(s, worker, ids[i]!)));
      const granted = answers.filter((r) => r.outcome === "acquired");
      assert.equal(granted.length, 1, `one grant of generation ${generation}: ${JSON.stringify(answers)}`);
      const winner = granted[0]!;
      assert.equal(winner.generation, generation);
      for (const r of answers.filter((x) => x !== winner)) {
        assert.equal(r.outcome, "busy");
        // Busy names the holder it read: the winner, or nobody when it read the lease free and lost the race.
        assert.ok(r.holder === winner.holder || r.holder === null, `busy names ${r.holder}`);
      }
      const session = nodes[ids.indexOf(winner.holder!)]!;
      assert.deepEqual(await lockHolders(worker), [session.pid]);
      assert.equal((await run(session, release(CLUSTER, worker, winner.holder!, BigInt(generation)))).length, 1);
    }
    for (const s of nodes) await s.client.end();
  });
});
