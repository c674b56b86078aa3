import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  NO_BINARIES_MESSAGE,
  compareVersions,
  orderBindirCandidates,
  parsePostgresVersion,
  versionOfDir,
} from "../../src/database/binaries.js";
import { parseAutoConfPort, parsePidFile, setAutoConfPort, shellQuote } from "../../src/database/cluster.js";
import { openDatabase } from "../../src/database/index.js";
import { describeParams, parseDatabaseUrl, validateDatabaseOption } from "../../src/database/options.js";
import { passwdEntry } from "../../src/database/owner.js";
import { Logger } from "../../src/log.js";

const logger = new Logger({ sink: () => undefined });

describe("binary discovery", () => {
  test("pg_config first, then PATH, then /usr/lib/postgresql by highest version, without duplicates", () => {
    const order = orderBindirCandidates({
      pgConfig: "/opt/pg/bin\n",
      path: ["/usr/lib/postgresql/15/bin", "/opt/pg/bin"],
      versioned: ["/usr/lib/postgresql/9.6/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/13/bin"],
    });
    assert.deepEqual(order, [
      { dir: "/opt/pg/bin", source: "pg_config" },
      { dir: "/usr/lib/postgresql/15/bin", source: "PATH" },
      { dir: "/usr/lib/postgresql/16/bin", source: "/usr/lib/postgresql" },
      { dir: "/usr/lib/postgresql/13/bin", source: "/usr/lib/postgresql" },
      { dir: "/usr/lib/postgresql/9.6/bin", source: "/usr/lib/postgresql" },
    ]);
  });

  test("without pg_config or PATH entries only the versioned directories remain", () => {
    const order = orderBindirCandidates({ pgConfig: null, path: [], versioned: ["/usr/lib/postgresql/14/bin"] });
    assert.deepEqual(order, [{ dir: "/usr/lib/postgresql/14/bin", source: "/usr/lib/postgresql" }]);
  });

  test("versions compare numerically, not as strings", () => {
    assert.deepEqual(versionOfDir("/usr/lib/postgresql/15/bin"), [15]);
    assert.deepEqual(versionOfDir("/usr/lib/postgresql/9.6/bin"), [9, 6]);
    assert.deepEqual(versionOfDir("/usr/lib/postgresql/weird/bin"), []);
    assert.ok(compareVersions([9, 6], [15]) < 0);
    assert.ok(compareVersions([16], [15, 4]) > 0);
    assert.equal(compareVersions([15], [15]), 0);
  });

  test("the version comes from postgres --version", () => {
    assert.equal(parsePostgresVersion("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"), "15.18");
    assert.equal(parsePostgresVersion("postgres (PostgreSQL) 17beta1"), "17");
    assert.equal(parsePostgresVersion("garbage"), null);
  });

  test("the missing-binaries message is one line naming both ways out", () => {
    assert.ok(!NO_BINARIES_MESSAGE.includes("\n"));
    assert.match(NO_BINARIES_MESSAGE, /apt-get install postgresql/);
    assert.match(NO_BINARIES_MESSAGE, /npm install --include=optional/);
  });
});

describe("database URLs", () => {
  test("parses every part, decoding escapes", () => {
    assert.deepEqual(parseDatabaseUrl("postgres://app:s%40cret@db.example:6543/my%20db"), {
      host: "db.example",
      port: 6543,
      user: "app",
      database: "my db",
      password: "s@cret",
    });
  });

  test("libpq defaults: port 5432, database = user, user = the OS user", () => {
    assert.deepEqual(parseDatabaseUrl("postgresql://db", "alice"), { host: "db", port: 5432, user: "alice", database: "alice" });
    assert.deepEqual(parseDatabaseUrl("postgres://", "alice"), { host: "localhost", port: 5432, user: "alice", database: "alice" });
  });

  test("a unix socket directory and other settings in the query string", () => {
    assert.deepEqual(parseDatabaseUrl("postgres:///app?host=/var/run/postgresql&port=5433&user=bob"), {
      host: "/var/run/postgresql",
      port: 5433,
      user: "bob",
      database: "app",
    });
  });

  test("IPv6 hosts lose their brackets", () => {
    assert.equal(parseDatabaseUrl("postgres://u@[::1]:5432/d").host, "::1");
  });

  test("errors name the field and the rule, never the password", () => {
    assert.throws(() => parseDatabaseUrl("mysql://root:hunter2@db/x"), (e: Error) => {
      assert.ok(e instanceof TypeError);
      assert.match(e.message, /^database\.url: scheme "mysql" is not PostgreSQL's/);
      assert.ok(!e.message.includes("hunter2"));
      return true;
    });
    assert.throws(() => parseDatabaseUrl("not a url hunter2"), (e: Error) => !e.message.includes("hunter2") && /database\.url/.test(e.message));
    assert.throws(() => parseDatabaseUrl("postgres://db/a/b"), /database name "a\/b" must not contain "\/"/);
    assert.throws(() => parseDatabaseUrl("postgres://db/a?port=0"), /port "0" must be an integer from 1 to 65535/);
  });

  test("descriptions never show the password", () => {
    const params = parseDatabaseUrl("postgres://app:hunter2@db:5432/app");
    assert.equal(describeParams(params), "postgres://app@db:5432/app");
    const db = openDatabase({ url: "postgres://app:hunter2@db:5432/app" }, { cwd: "/", logger });
    assert.equal(db.description, "postgres://app@db:5432/app (external)");
    assert.equal(db.connectionParams().password, "hunter2");
    assert.equal(describeParams({ host: "/run/pg", port: 5432, user: "u", database: "d" }), "postgres://u@/d?host=/run/pg&port=5432");
  });
});

describe("database option validation", () => {
  test("accepts the three forms", () => {
    assert.equal(validateDatabaseOption("embedded"), "embedded");
    assert.deepEqual(validateDatabaseOption({ url: "postgres://db/x" }), { url: "postgres://db/x" });
    assert.deepEqual(validateDatabaseOption({ pgdata: "./data" }), { pgdata: "./data" });
  });

  test("refuses anything else with one line naming field, value and rule", () => {
    const cases: [unknown, RegExp][] = [
      ["external", /^database: "external" is not a database option \(use "embedded", \{ url \} or \{ pgdata \}\)$/],
      [null, /^database: null is not a database option/],
      [42, /^database: 42 is not a database option/],
      [{}, /^database: an object with keys \[\] is not a database option/],
      [{ url: "postgres://x", pgdata: "/d" }, /keys \[url, pgdata\].*exactly one/],
      [{ url: 5 }, /^database\.url: 5 must be a string$/],
      [{ url: "http://x" }, /^database\.url: scheme "http"/],
      [{ pgdata: "" }, /^database\.pgdata: "" must be a non-empty directory path$/],
      [{ pgdata: 3 }, /^database\.pgdata: 3 must be/],
    ];
    for (const [value, message] of cases) {
      assert.throws(() => validateDatabaseOption(value), (e: Error) => e instanceof TypeError && message.test(e.message) && !e.message.includes("\n"));
    }
  });

  test("openDatabase validates before doing anything", () => {
    assert.throws(() => openDatabase({ pgdata: "" }, { cwd: "/", logger }), /database\.pgdata/);
  });

  test("a managed database describes itself before and after start without a password", () => {
    const db = openDatabase("embedded", { cwd: "/srv/app", logger });
    assert.match(db.description, /^embedded PostgreSQL in \.\/\.bgworker\/pgdata \(managed, log bgworker-server\.log\)$/);
    assert.throws(() => db.connectionParams(), /not started yet/);
    const other = openDatabase({ pgdata: "/var/lib/x" }, { cwd: "/srv/app", logger });
    assert.match(other.description, /^PostgreSQL in \/var\/lib\/x \(managed/);
  });
});

describe("cluster files", () => {
  test("postmaster.pid: pid, port, socket dir, status", () => {
    const text = "4242\n/data\n1700000000\n54321\n/data\n127.0.0.1\n  1234     5678\nready   \n";
    assert.deepEqual(parsePidFile(text), { pid: 4242, port: 54321, socketDir: "/data", status: "ready" });
    assert.equal(parsePidFile("\n"), null);
    assert.deepEqual(parsePidFile("77\n/d\n"), { pid: 77, port: null, socketDir: null, status: "" });
  });

  test("the saved port is read from, and written to, postgresql.auto.conf keeping other settings", () => {
    const auto = "# Do not edit this file manually!\nwork_mem = '8MB'\nport = '5433'\n";
    assert.equal(parseAutoConfPort(auto), 5433);
    assert.equal(parseAutoConfPort("port=6000 # comment\nport = 6001\n"), 6001);
    assert.equal(parseAutoConfPort("work_mem = '8MB'\n"), null);
    const updated = setAutoConfPort(auto, 54321);
    assert.equal(updated, "# Do not edit this file manually!\nwork_mem = '8MB'\nport = '54321'\n");
    assert.equal(parseAutoConfPort(setAutoConfPort("", 7000)), 7000);
  });

  test("pg_ctl -o values are quoted for the shell", () => {
    assert.equal(shellQuote("/tmp/a b"), "'/tmp/a b'");
    assert.equal(shellQuote("it's"), "'it'\\''s'");
  });

  test("the server's OS user comes from /etc/passwd", () => {
    const passwd = "root:x:0:0:root:/root:/bin/bash\npostgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n";
    assert.deepEqual(passwdEntry("postgres", passwd), { name: "postgres", uid: 101, gid: 104, home: "/var/lib/postgresql" });
    assert.equal(passwdEntry("nobody-here", passwd), null);
  });
});
