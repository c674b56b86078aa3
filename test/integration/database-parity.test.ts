/**
 * PostgreSQL parity of the served database (issues #9, #11): a managed server that exits unasked is started
 * again; pg_terminate_backend() and pg_cancel_backend() on a worker's session; DDL on databases while a
 * postmaster runs; why the database cannot be reached; the database URL's password off the command line.
 * Every postmaster, server and temp dir is stopped or removed, even on failure.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Cluster, SERVER_LOG } from "../../src/database/cluster.js";
import { runAs } from "../../src/database/owner.js";
import { pickFreePort } from "../../src/database/ports.js";
import type { ConnectionParams } from "../../src/database/types.js";
import { dbWorker, managedPgdata, nth, nthLog, postmasterWith, sql } from "../helpers/database.js";
import { createTestCluster, type TestCluster } from "../helpers/cluster.js";
import { eventually, linesMatching, ROOT, startPostmaster, type RunningPostmaster } from "../helpers/postmaster.js";

let primary: TestCluster;

before(async () => {
  primary = await createTestCluster();
});

after(async () => {
  await primary?.stop();
});

describe("a managed server that exits without being asked", () => {
  it("is started again after SIGKILL and after pg_ctl stop -m immediate; SPI workers come back by their rules", async (t) => {
    const pgdata = await managedPgdata(t, "bgw-supervised-");
    const { pm, client } = await postmasterWith(t, ["--pgdata", pgdata], [
      dbWorker("keeper", "phaseProbe", { startTime: "PostmasterStart" }),
      dbWorker("spi", "spiSession", { spi: true, restartTimeMs: 200 }),
    ]);
    const cluster = await Cluster.at(pgdata);
    const keeper = await nth(pm, "started", "keeper");
    await nth(pm, "connected", "spi");

    // 1. SIGKILL of the server's postmaster.
    const first = await cluster.runningPid();
    assert.ok(first !== null);
    const killing = Date.now();
    process.kill(first, "SIGKILL");
    await nthLog(pm, /^database phase is now starting: /);
    await nthLog(pm, /^the managed PostgreSQL server exited without being asked to, after running \d+ ms: starting it again$/);
    await nthLog(pm, /^starting the PostgreSQL server again \(attempt 1\)$/);
    await nthLog(pm, /^database system is ready again: PostgreSQL on 127\.0\.0\.1 port \d+ \(attempt \d+\)$/);
    const second = await nth(pm, "connected", "spi", 2);
    t.diagnostic(`SIGKILL of the server: SPI worker connected again ${(second.at as number) - killing} ms later`);
    const restarted = await cluster.runningPid();
    assert.ok(restarted !== null && restarted !== first, "a new server runs");

    // 2. pg_ctl stop -m immediate by hand.
    const stopping = Date.now();
    await runAs(cluster.owner, cluster.program("pg_ctl"), ["stop", "-w", "-m", "immediate", "-D", pgdata]);
    await nthLog(pm, /^the managed PostgreSQL server exited without being asked to/, 2);
    await nthLog(pm, /^database system is ready again: /, 2);
    const third = await nth(pm, "connected", "spi", 3);
    t.diagnostic(`pg_ctl stop -m immediate: SPI worker connected again ${(third.at as number) - stopping} ms later`);
    await nthLog(pm, /^database phase is now running: /, 3);

    const rows = new Map((await client.status()).map((r) => [r.name, r]));
    assert.equal(rows.get("keeper")?.pid, keeper.pid, "a worker without database access runs on");
    assert.equal(rows.get("spi")?.restarts, 2, "the SPI worker was restarted once per server loss");
    await client.close();
    pm.signal("SIGINT");
    assert.deepEqual(await pm.exited, { code: 0, signal: null });
    assert.equal(await cluster.runningPid(), null, "the managed server is stopped with the postmaster, and not started again");
  });
});

/**
 * Waits until the primary's server log shows `more` further connection attempts refused as `refused` (the
 * phase monitor's, every 100 ms): a negative check after it has seen that many decisions of the postmaster.
 */
async function moreAttempts(refused: RegExp, more = 3): Promise<void> {
  const log = join(primary.pgdata, SERVER_LOG);
  const before = linesMatching(log, refused);
  await eventually(`${more} more refused attempts in the server log`, async () => (linesMatching(log, refused) >= before + more ? true : undefined), 60_000);
}

/** Waits until the session `backendPid` runs a statement matching `like`. */
async function runningStatement(backendPid: number, like: string): Promise<void> {
  await eventually(`backend ${backendPid} running ${like}`, async () => {
    const rows = await sql(primary.params, `select 1 from pg_stat_activity where pid = ${backendPid} and state = 'active' and query like '${like}'`);
    return rows.length > 0 ? true : undefined;
  });
}

describe("pg_terminate_backend() and pg_cancel_backend() on a worker's session", () => {
  it("terminate acts as SIGTERM: with SIGTERM attached the flag is set and waitLatch returns false; without, FATAL and exit 1", async (t) => {
    const { pm, client } = await postmasterWith(t, ["--database", primary.url], [
      dbWorker("attached", "terminable", { spi: true, type: "attached-type" }),
      dbWorker("plain", "spiSession", { spi: true, type: "plain-type" }),
    ]);
    const attached = await nth(pm, "connected", "attached");
    const plain = await nth(pm, "connected", "plain");
    const names = await sql(primary.params, `select pid, application_name from pg_stat_activity where pid in (${attached.backendPid}, ${plain.backendPid}) order by application_name`);
    assert.deepEqual(names, [
      { pid: attached.backendPid, application_name: "attached-type" },
      { pid: plain.backendPid, application_name: "plain-type" },
    ], "application_name is the worker's type");
    // The status maps pg_stat_activity rows to workers: each row shows its session's backend pid.
    const rows = await eventually("backend pids in the status", async () => {
      const found = new Map((await client.status()).map((r) => [r.name, r]));
      return found.get("attached")?.backendPid != null && found.get("plain")?.backendPid != null ? found : undefined;
    });
    assert.equal(rows.get("attached")?.backendPid, attached.backendPid);
    assert.equal(rows.get("plain")?.backendPid, plain.backendPid);

    await sql(primary.params, `select pg_terminate_backend(${attached.backendPid as number})`);
    const stopping = await nth(pm, "stopping", "attached");
    assert.equal(stopping.sigterm, true, "sigtermReceived() after pg_terminate_backend");
    await pm.waitForLog(new RegExp(`^background worker "attached-type" \\(PID ${attached.pid}\\) exited with exit code 0$`));

    await sql(primary.params, `select pg_terminate_backend(${plain.backendPid as number})`);
    const fatal = await pm.waitForLog(/^terminating background worker "plain-type" due to administrator command$/);
    assert.equal(fatal.level, "FATAL");
    assert.equal(fatal.worker?.pid, plain.pid);
    await pm.waitForLog(new RegExp(`^background worker "plain-type" \\(PID ${plain.pid}\\) exited with exit code 1$`));
    assert.equal(pm.logs(/^terminating background worker "plain-type"/).length, 1, "one FATAL line");
    assert.equal(pm.logs(/uncaught|unhandled/i).length, 0);
  });

  it("cancel fails the running statement with SpiError 57014; the session goes on", async (t) => {
    const { pm, client } = await postmasterWith(t, ["--database", primary.url], [dbWorker("sleeper", "cancellable", { spi: true })]);
    const connected = await nth(pm, "connected", "sleeper");
    const backendPid = connected.backendPid as number;
    await runningStatement(backendPid, "select pg_sleep(120)");
    await sql(primary.params, `select pg_cancel_backend(${backendPid})`);
    const cancelled = await nth(pm, "cancelled", "sleeper");
    assert.deepEqual({ errorName: cancelled.errorName, code: cancelled.code, sqlstate: cancelled.sqlstate, message: cancelled.message }, {
      errorName: "SpiError",
      code: "57014",
      sqlstate: "57014",
      message: "canceling statement due to user request",
    });
    const after = await nth(pm, "after", "sleeper");
    assert.equal(after.one, 1, "the session still works after a cancel");
    const row = (await client.status()).find((r) => r.name === "sleeper");
    assert.equal(row?.state, "running");
    assert.equal(row?.pid, connected.pid);
  });
});

describe("databases of the cluster while a postmaster runs", () => {
  it("CREATE DATABASE ... TEMPLATE postgres, ALTER DATABASE ... RENAME and DROP DATABASE work; a promotion-free phase stays running", async (t) => {
    const { pm, client } = await postmasterWith(t, ["--database", primary.url], [dbWorker("keeper", "phaseProbe")]);
    await nth(pm, "started", "keeper");
    await pm.waitForLog(/^database phase is now running: /);
    const admin = { ...primary.params, database: "template1" };
    await sql(admin, "create database parity_copy template postgres");
    await sql(admin, "alter database parity_copy rename to parity_renamed");
    await sql(admin, "drop database parity_renamed");
    const monitor = await sql(admin, "select datname, backend_type from pg_stat_activity where application_name = 'bgworker phase monitor'");
    assert.deepEqual(monitor, [{ datname: null, backend_type: "walsender" }]);
    assert.equal((await client.statusReport()).postmaster.phase, "running");
    assert.equal(pm.logs(/^database phase is now/).length, 1);
  });
});

describe("a served database that cannot be reached", () => {
  it("the log says why once, and again when the reason changes; the status shows it on the postmaster row", async (t) => {
    const { url } = primary;
    const { pm, client } = await postmasterWith(t, ["--database", url.replace(/\/postgres$/, "/parity_later")], [dbWorker("keeper", "phaseProbe")]);
    const line = await pm.waitForLog(/^database cannot be reached: /);
    assert.equal(line.message, `database cannot be reached: connection to server at "127.0.0.1", port ${primary.params.port} failed: database "parity_later" does not exist`);
    const report = await client.statusReport();
    assert.equal(report.postmaster.phase, "starting");
    assert.equal(report.postmaster.phaseReason, line.message.replace(/^database cannot be reached: /, ""));
    // Still one line after three more attempts of the phase monitor, each refused in the server's log.
    await moreAttempts(/FATAL: +database "parity_later" does not exist/);
    assert.equal(pm.logs(/^database cannot be reached: /).length, 1);

    await sql(primary.params, "create database parity_later");
    t.after(() => sql(primary.params, "drop database if exists parity_later with (force)"));
    await pm.waitForLog(/^database phase is now running: server accepts writes$/);
    assert.equal((await client.statusReport()).postmaster.phaseReason, null);
    await client.close();
    pm.signal("SIGINT");
    await pm.exited;
  });

  it("a closed port: connection refused", async (t) => {
    const port = await pickFreePort();
    const { pm, client } = await postmasterWith(t, ["--database", `postgres://app:pw@127.0.0.1:${port}/app`], []);
    const line = await pm.waitForLog(/^database cannot be reached: /);
    assert.equal(line.message, `database cannot be reached: connection to server at "127.0.0.1", port ${port} failed: Connection refused`);
    const text = await runNodeStatus(pm);
    assert.match(text, new RegExp(`^postmaster pid ${pm.pid}: phase starting \\(connection to server at "127\\.0\\.0\\.1", port ${port} failed: Connection refused\\), `));
    assert.ok(!pm.records.some((r) => r.message.includes("pw@")), "never the password");
    await client.close();
  });
});

async function runNodeStatus(pm: RunningPostmaster): Promise<string> {
  const { runNode, CLI } = await import("../helpers/postmaster.js");
  const run = await runNode([CLI, "status", "--socket", pm.socket]);
  assert.equal(run.code, 0, run.stderr);
  return run.stdout;
}

describe("secrets off the command line", () => {
  /** Role `app` with a password, which pg_hba.conf asks for (scram) over TCP; trust stays for the rest. */
  async function passwordRole(): Promise<ConnectionParams> {
    await sql(primary.params, "do $$ begin if not exists (select from pg_roles where rolname = 'parity_app') then create role parity_app login password 'right-pw'; end if; end $$");
    const hba = join(primary.pgdata, "pg_hba.conf");
    const text = await readFile(hba, "utf8");
    if (!text.startsWith("host all parity_app")) {
      await writeFile(hba, `host all parity_app 127.0.0.1/32 scram-sha-256\nhost replication parity_app 127.0.0.1/32 scram-sha-256\n${text}`);
      await sql(primary.params, "select pg_reload_conf()");
    }
    return { ...primary.params, user: "parity_app" };
  }

  it("a password given in --database is gone from /proc/PID/cmdline, with one WARNING; it is never logged", async (t) => {
    const app = await passwordRole();
    const url = `postgres://parity_app:right-pw@127.0.0.1:${app.port}/postgres`;
    const { pm } = await postmasterWith(t, ["--database", url], [dbWorker("spi", "spiSession", { spi: true })]);
    await nth(pm, "connected", "spi");
    const cmdline = readFileSync(`/proc/${pm.pid}/cmdline`, "utf8");
    assert.ok(!cmdline.includes("right-pw"), `the password is not in the command line: ${cmdline}`);
    assert.match(cmdline, new RegExp(`--database postgres://parity_app@127\\.0\\.0\\.1:${app.port}/postgres`));
    const warnings = pm.records.filter((r) => r.level === "WARNING");
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!.message, /password given in --database .* removed .* BGWORKER_DATABASE_URL, PGPASSWORD or a password file/);
    assert.ok(!pm.records.some((r) => JSON.stringify(r).includes("right-pw")), "never logged");
  });

  it("the URL from BGWORKER_DATABASE_URL and the password from PGPASSWORD or PGPASSFILE work, without a warning", async (t) => {
    const app = await passwordRole();
    const passfile = join(await mkdtemp(join(tmpdir(), "bgw-pgpass-")), "pgpass");
    t.after(() => rm(join(passfile, ".."), { recursive: true, force: true }));
    await writeFile(passfile, `127.0.0.1:${app.port}:*:parity_app:right-pw\n`, { mode: 0o600 });
    const url = `postgres://parity_app@127.0.0.1:${app.port}/postgres`;
    for (const env of [{ BGWORKER_DATABASE_URL: url, PGPASSWORD: "right-pw" }, { BGWORKER_DATABASE_URL: url, PGPASSFILE: passfile }]) {
      const pm = await startPostmaster({ args: [], workers: [dbWorker("spi", "spiSession", { spi: true })], env });
      try {
        const connected = await nth(pm, "connected", "spi");
        assert.equal(connected.database, "postgres");
        assert.ok(pm.logs(new RegExp(`^serving postgres://parity_app@127\\.0\\.0\\.1:${app.port}/postgres \\(external\\)$`)).length === 1);
        assert.equal(pm.records.filter((r) => r.level === "WARNING").length, 0);
        assert.equal(pm.logs(/deprecat/i).length + pm.stderrText.filter((l) => /deprecat/i.test(l)).length, 0, "no deprecation warning from the driver");
      } finally {
        await pm.close();
      }
    }
  });

  it("a wrong password: the log says password authentication failed, once", async (t) => {
    const app = await passwordRole();
    const { pm } = await postmasterWith(t, [], [], { BGWORKER_DATABASE_URL: `postgres://parity_app@127.0.0.1:${app.port}/postgres`, PGPASSWORD: "wrong-pw" });
    const line = await pm.waitForLog(/^database cannot be reached: /);
    assert.equal(line.message, `database cannot be reached: connection to server at "127.0.0.1", port ${app.port} failed: password authentication failed for user "parity_app"`);
    await moreAttempts(/FATAL: +password authentication failed for user "parity_app"/);
    assert.equal(pm.logs(/^database cannot be reached: /).length, 1);
  });

  it("a malformed --database URL: exit 2, one line, nothing logged before it", async () => {
    const { runNode, CLI } = await import("../helpers/postmaster.js");
    const dir = await mkdtemp(join(tmpdir(), "bgw-badurl-"));
    try {
      const run = await runNode([CLI, "start", join(ROOT, "test", "fixtures", "extension.ts"), "--database", "postgres://u:secret@h:99999/db", "--socket", join(dir, "s")], { cwd: dir });
      assert.equal(run.code, 2);
      assert.equal(run.stdout, "");
      assert.equal(run.stderr, 'bgworker: --database: not a valid URL (expected postgres://user@host:port/database) (see "bgworker start --help")\n');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
