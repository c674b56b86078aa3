/**
 * The shape of the lease SQL (src/cluster/lease-sql.ts): what each statement must say for the lease to be
 * safe. Their behaviour against a real server belongs to the integration tests.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  acquire,
  ADVISORY_NAMESPACE,
  clusterStatus,
  heartbeat,
  registerNode,
  enrollSession,
  fence,
  grantsFor,
  release,
  RELEASE_CHANNEL,
  renew,
  SCHEMA_DDL,
  schemaCheck,
  sessionSettings,
  STALE_TOKEN_SQLSTATE,
} from "../../src/cluster/lease-sql.js";
import { leaseTimings } from "../../src/cluster/timings.js";

const T = leaseTimings({ shutdownTimeoutMs: 10_000 });
const flat = (text: string) => text.replace(/\s+/g, " ");

/** The body of a function of the DDL. */
function functionBody(name: string): string {
  const start = SCHEMA_DDL.indexOf(`FUNCTION bgworker.${name}(`);
  assert.ok(start >= 0, `${name} is defined`);
  const end = SCHEMA_DDL.indexOf("$fn$;", start);
  return flat(SCHEMA_DDL.slice(start, end));
}

describe("lease SQL", () => {
  it("creates the schema and tables idempotently, and never deletes a lease row", () => {
    for (const fragment of ["CREATE SCHEMA IF NOT EXISTS bgworker", "CREATE TABLE IF NOT EXISTS bgworker.cluster_lease", "CREATE TABLE IF NOT EXISTS bgworker.cluster_node", "CREATE OR REPLACE FUNCTION bgworker.acquire_lease", "CREATE OR REPLACE FUNCTION bgworker.fence"]) {
      assert.ok(SCHEMA_DDL.includes(fragment), fragment);
    }
    assert.doesNotMatch(SCHEMA_DDL, /DELETE|TRUNCATE|DROP/i);
    assert.match(flat(SCHEMA_DDL), /PRIMARY KEY \(cluster, worker\)/);
  });

  it("acquire is a compare-and-set to G+1, only when free, expired by the server's clock, or its holder's session gone", () => {
    const body = functionBody("acquire_lease");
    assert.match(body, /v\.holder IS NULL OR v\.expires_at <= v_now/);
    assert.match(body, /v_now timestamptz := clock_timestamp\(\)/, "the server's clock, now, not the statement's start");
    assert.match(body, /NOT EXISTS \(SELECT 1 FROM pg_locks k WHERE k\.locktype = 'advisory'.* k\.pid = v\.holder_pid\)/);
    assert.match(body, /ON CONFLICT \(cluster, worker\) DO UPDATE SET generation = l\.generation \+ 1, .* WHERE l\.generation = v\.generation AND v\.sessions @> l\.sessions RETURNING l\.generation, l\.expires_at/,
      "and no session enrolled since the read, which the loop did not end");
    assert.match(body, /RETURN QUERY SELECT 'acquired', v_generation::text, p_node, .*pg_backend_pid\(\)/);
  });

  it("acquire ends generation G's sessions, checked against backend_start, and waits for them, before the compare-and-set", () => {
    const body = functionBody("acquire_lease");
    const terminate = body.indexOf("pg_terminate_backend(v_pid, p_terminate_ms)");
    const lock = body.indexOf(`pg_try_advisory_lock(${ADVISORY_NAMESPACE}, v.id)`);
    const forUpdate = body.indexOf("FOR UPDATE");
    const cas = body.indexOf("ON CONFLICT (cluster, worker) DO UPDATE");
    assert.ok(terminate > 0 && terminate < lock && lock < forUpdate && forUpdate < cas, "terminate, lock, FOR UPDATE, compare-and-set, in that order");
    assert.match(body, /a\.pid = v\.holder_pid AND a\.backend_start = v\.holder_backend_start AND v\.expires_at <= v_now/, "a holder's own session only once its lease has expired");
    assert.match(body, /r\.pid = a\.pid AND r\.backend_start = a\.backend_start\)\) ORDER BY a\.backend_start LOOP/);
    assert.match(
      body,
      /IF NOT pg_terminate_backend\(v_pid, p_terminate_ms\) THEN PERFORM pg_stat_clear_snapshot\(\); IF EXISTS \(SELECT 1 FROM pg_stat_activity a WHERE a\.pid = v_pid\) THEN RETURN QUERY SELECT 'busy'/,
      "a session that ended by itself since the read counts as ended",
    );
    assert.match(body, /EXCEPTION WHEN lock_not_available/);
    assert.match(body, /pg_advisory_unlock\(/, "a lock taken by a call that then gives up is given back");
  });

  it("acquire's parameters: cluster, worker, node, lease, and a termination wait that fits the lease", () => {
    const s = acquire("prod", "scheduler", "host-1", T);
    assert.match(s.text, /FROM bgworker\.acquire_lease\(\$1, \$2, \$3, \$4, \$5\)/);
    assert.deepEqual(s.values, ["prod", "scheduler", "host-1", 5000, 1666]);
  });

  it("renew is scoped to the holder, its generation and its session, and only while unexpired", () => {
    const s = renew("prod", "scheduler", "host-1", 12345678901234567n, T);
    assert.match(s.text, /^WITH beat AS \(UPDATE bgworker\.cluster_node SET heartbeat_at = now\(\) WHERE cluster = \$1 AND node_id = \$3 AND backend_pid = pg_backend_pid\(\)\) /, "the node's heartbeat rides on the renewal");
    assert.match(s.text, / UPDATE bgworker\.cluster_lease SET renewed_at = now\(\), expires_at = now\(\) \+ make_interval\(secs => \$5 \/ 1000\.0\)/);
    assert.match(s.text, /WHERE cluster = \$1 AND worker = \$2 AND holder = \$3 AND generation = \$4::bigint AND holder_pid = pg_backend_pid\(\) AND expires_at > now\(\)/);
    assert.match(s.text, /RETURNING generation::text AS generation, .* AS server_now, .* AS expires_at, pg_backend_pid\(\) AS backend_pid$/);
    assert.deepEqual(s.values, ["prod", "scheduler", "host-1", "12345678901234567", 5000], "a bigint travels as text, exactly");
  });

  it("release frees the row, gives the lock back and NOTIFYs, for the holder's generation only", () => {
    const s = release("prod", "scheduler", "host-1", 4n);
    assert.match(s.text, /SET holder = NULL/);
    assert.match(s.text, /WHERE cluster = \$1 AND worker = \$2 AND holder = \$3 AND generation = \$4::bigint AND holder_pid = pg_backend_pid\(\)/);
    assert.ok(s.text.includes(`pg_advisory_unlock(${ADVISORY_NAMESPACE}, id)`));
    assert.ok(s.text.includes(`pg_notify('${RELEASE_CHANNEL}', json_build_object('cluster', $1::text, 'worker', $2::text, 'node', $3::text, 'generation', generation::text)::text)`));
    assert.doesNotMatch(s.text, /generation = generation/, "the generation stays; the next holder's is one more");
  });

  it("the fence locks FOR KEY SHARE, judges by clock_timestamp(), and fails with SQLSTATE WB001", () => {
    const body = functionBody("fence");
    assert.match(body, /FOR KEY SHARE/);
    assert.match(body, /v\.generation <> p_generation OR v\.holder IS NULL OR v\.expires_at <= clock_timestamp\(\)/);
    assert.match(body, new RegExp(`ERRCODE = '${STALE_TOKEN_SQLSTATE}'`));
    assert.match(STALE_TOKEN_SQLSTATE, /^[I-Z5-9][0-9A-Z]{4}$/, "an implementation-defined SQLSTATE class");
    assert.deepEqual(fence("prod", "scheduler", 3n), { text: "SELECT bgworker.fence($1, $2, $3::bigint)", values: ["prod", "scheduler", "3"] });
  });

  it("a worker enrols its own session under its generation, unless the token is already stale", () => {
    const s = enrollSession("prod", "scheduler", 3n);
    assert.match(s.text, /'pid', pg_backend_pid\(\)/);
    assert.match(s.text, /WHERE cluster = \$1 AND worker = \$2 AND generation = \$3::bigint AND holder IS NOT NULL AND expires_at > clock_timestamp\(\)/);
    assert.match(s.text, /jsonb_array_elements\(sessions\) AS e WHERE EXISTS \(SELECT 1 FROM pg_stat_activity a WHERE a\.pid = \(e->>'pid'\)::integer AND a\.backend_start = /, "ended sessions are dropped");
  });

  it("the cluster session never lets the server drop a silent holder before the lease's time", () => {
    const s = sessionSettings(T, "host-1");
    for (const name of ["tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count", "tcp_user_timeout", "idle_session_timeout", "statement_timeout"]) {
      assert.ok(s.text.includes(`set_config('${name}'`), name);
    }
    assert.match(s.text, /pg_backend_pid\(\) AS backend_pid$/);
    const [name, idle, ms] = s.values;
    assert.equal(name, "bgworker cluster host-1");
    assert.ok(Number(idle) * 1000 >= T.leaseMs, "keepalives: idle alone is at least the lease");
    assert.equal(ms, "5000", "tcp_user_timeout and idle_session_timeout: the lease");
    assert.equal(sessionSettings(leaseTimings({ leaseMs: 2500, renewMs: 500, shutdownTimeoutMs: 1 }), "n").values[1], "3", "rounded up");
  });

  it("an administrator's grants for a role, and a check that needs no privilege", () => {
    assert.deepEqual(grantsFor('web "app"'), [
      'GRANT USAGE ON SCHEMA bgworker TO "web ""app"""',
      'GRANT SELECT, INSERT, UPDATE ON bgworker.cluster_lease, bgworker.cluster_node TO "web ""app"""',
      'GRANT EXECUTE ON FUNCTION bgworker.acquire_lease(text, text, text, integer, integer), bgworker.fence(text, text, bigint) TO "web ""app"""',
    ]);
    const check = schemaCheck();
    assert.match(check.text, /^SELECT coalesce\(s\.present, false\) AS present, coalesce\(s\.present AND s\.usable, false\) AS usable FROM/);
    assert.doesNotMatch(check.text, /::regclass|::regproc|to_reg/, "by oid from the catalogs: no name lookup in a schema the role may not use");
    for (const privilege of ["'USAGE'", "'SELECT'", "'INSERT'", "'UPDATE'", "'EXECUTE'"]) assert.ok(check.text.includes(privilege), privilege);
    assert.deepEqual(check.values, []);
  });

  it("a node takes its id only from a node whose session is gone, and heartbeats by the server's clock", () => {
    const r = registerNode("prod", "web-1-42", "web-1", 42);
    assert.match(r.text, /ON CONFLICT \(cluster, node_id\) DO UPDATE .* WHERE n\.backend_pid = pg_backend_pid\(\) OR NOT EXISTS \(SELECT 1 FROM pg_stat_activity a WHERE a\.pid = n\.backend_pid AND a\.backend_start = n\.backend_start\) RETURNING node_id$/);
    assert.deepEqual(r.values, ["prod", "web-1-42", "web-1", 42]);
    assert.match(heartbeat("prod", "n").text, /SET heartbeat_at = now\(\) WHERE cluster = \$1 AND node_id = \$2 AND backend_pid = pg_backend_pid\(\)/);
    const status = clusterStatus("prod").text;
    assert.match(status, /^SELECT \(extract\(epoch from now\(\)\) \* 1000\)::float8 AS server_now/);
    for (const field of ["'nodeId'", "'heartbeatAt'", "'live'", "'holder'", "'generation', l.generation::text", "'expiresAt'"]) assert.ok(status.includes(field), field);
  });
});

