/**
 * Every error of the public API has a stable `code` (docs/errors.md): the errors of signals, SPI, the latch,
 * the control socket's path and the database layer that `Postmaster.start()` passes through. Each is made
 * here without a worker process, a server or a cluster: outside a worker, with a stand-in worker role, or
 * with a cluster whose programs do not exist.
 */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { BackgroundWorkerBuilder, definitionOf } from "../../src/builder.js";
import { connect } from "../../src/control/client.js";
import { socketAddress } from "../../src/control/socket-path.js";
import { leaveRole, takeRole } from "../../src/context.js";
import type { PgBinaries } from "../../src/database/binaries.js";
import { Cluster } from "../../src/database/cluster.js";
import { ManagedDatabase } from "../../src/database/managed.js";
import { runAs, type ServerOwner } from "../../src/database/owner.js";
import { passwordOf } from "../../src/database/password.js";
import { ERROR_CODES } from "../../src/errors.js";
import type { Launcher } from "../../src/launcher.js";
import { Logger } from "../../src/log.js";
import { BackgroundWorker } from "../../src/runtime/worker.js";
import type { StartMessage } from "../../src/runtime/ipc.js";
import { Latch } from "../../src/runtime/latch.js";
import { signalsOf } from "../../src/runtime/signals.js";
import { connectSpi, disconnectSpi, Spi, transaction } from "../../src/runtime/spi.js";
import { WorkerRole } from "../../src/runtime/worker-role.js";

type ErrorClass = typeof Error | typeof TypeError | typeof RangeError;

/** The error `fn` throws or rejects with. */
async function caught(fn: () => unknown): Promise<unknown> {
  try {
    await fn();
  } catch (error) {
    return error;
  }
  return assert.fail("expected an error");
}

/** Asserts that `fn` fails with exactly class `Class` and `code`, in one line. */
async function failsWith(fn: () => unknown, Class: ErrorClass, code: string, message?: RegExp): Promise<void> {
  const error = await caught(fn);
  assert.ok(error instanceof Error, `expected an Error, got ${String(error)}`);
  assert.equal(error.constructor, Class, `${error.name}: ${error.message}`);
  assert.equal((error as { code?: unknown }).code, code, error.message);
  assert.ok((ERROR_CODES as readonly string[]).includes(code), `${code} is one of ERROR_CODES`);
  assert.ok(!error.message.includes("\n"), "one line");
  if (message !== undefined) assert.match(error.message, message);
}

describe("error codes: every code is documented", () => {
  it("docs/errors.md's table lists exactly ERROR_CODES", async () => {
    const doc = await readFile(fileURLToPath(new URL("../../docs/errors.md", import.meta.url)), "utf8");
    const listed = [...doc.matchAll(/^\| `(ERR_BGWORKER_[A-Z_]+)` \|/gm)].map((match) => match[1]);
    assert.deepEqual([...listed].sort(), [...ERROR_CODES].sort());
  });
});

describe("error codes: signals", () => {
  it("attachSignalHandlers with flags that are not SignalWakeFlags: ERR_BGWORKER_INVALID_VALUE", async () => {
    for (const bad of [16, -1, 1.5, "SIGHUP"]) {
      await failsWith(() => signalsOf(bad as number), TypeError, "ERR_BGWORKER_INVALID_VALUE", /^attachSignalHandlers: flags .* must combine SignalWakeFlags/);
    }
  });
});

describe("error codes: Spi and transaction (no database session)", () => {
  it("Spi outside transaction(): ERR_BGWORKER_NOT_IN_TRANSACTION", async () => {
    await failsWith(() => Spi.run("select 1"), Error, "ERR_BGWORKER_NOT_IN_TRANSACTION", /^Spi\.run: not inside BackgroundWorker\.transaction\(\)$/);
    await failsWith(() => Spi.getOne("select 1"), Error, "ERR_BGWORKER_NOT_IN_TRANSACTION");
    await failsWith(() => Spi.select("select 1"), Error, "ERR_BGWORKER_NOT_IN_TRANSACTION");
  });

  it("Spi with sql or params of the wrong kind: ERR_BGWORKER_INVALID_VALUE", async () => {
    await failsWith(() => Spi.run(7 as unknown as string), TypeError, "ERR_BGWORKER_INVALID_VALUE", /^Spi\.run: sql 7 must be a string$/);
    await failsWith(() => Spi.getOne("select $1", "x" as unknown as unknown[]), TypeError, "ERR_BGWORKER_INVALID_VALUE", /^Spi\.getOne: params "x" must be an array/);
    await failsWith(() => Spi.select(null as unknown as string), TypeError, "ERR_BGWORKER_INVALID_VALUE");
  });

  it("transaction() before connecting: ERR_BGWORKER_SPI_NOT_CONNECTED; of a non-function: ERR_BGWORKER_INVALID_VALUE", async () => {
    await failsWith(() => transaction(() => 1), Error, "ERR_BGWORKER_SPI_NOT_CONNECTED", /call BackgroundWorker\.connectWorkerToSpi\(\) first/);
    await failsWith(() => transaction("select 1" as never), TypeError, "ERR_BGWORKER_INVALID_VALUE", /^transaction: fn "select 1" must be a function$/);
  });

  describe("with a stand-in session state", () => {
    const SESSION = Symbol.for("bgworker.spi");
    const slots = globalThis as unknown as Record<symbol, { inTransaction: boolean; connecting: boolean } | undefined>;
    const state = () => {
      // Made by any Spi call; the first test above has made it already.
      const session = slots[SESSION];
      assert.ok(session, "the SPI session state exists");
      return session;
    };
    after(async () => {
      state().inTransaction = false;
      state().connecting = false;
      await disconnectSpi();
    });

    it("transaction() inside transaction(): ERR_BGWORKER_TRANSACTION_NESTED", async () => {
      state().inTransaction = true;
      await failsWith(() => transaction(() => 1), Error, "ERR_BGWORKER_TRANSACTION_NESTED", /transactions do not nest/);
    });

    it("an Spi call in a transaction without a session: ERR_BGWORKER_SPI_NOT_CONNECTED", async () => {
      state().inTransaction = true;
      await failsWith(() => Spi.run("select 1"), Error, "ERR_BGWORKER_SPI_NOT_CONNECTED", /^Spi\.run: not connected to a database/);
      state().inTransaction = false;
    });

    it("connecting the session twice: ERR_BGWORKER_SPI_ALREADY_CONNECTED", async () => {
      state().connecting = true;
      const params = { host: "127.0.0.1", port: 1, user: "u", database: "d" };
      await failsWith(() => connectSpi(params, { applicationName: "again" }), Error, "ERR_BGWORKER_SPI_ALREADY_CONNECTED", /a worker connects once/);
      state().connecting = false;
    });
  });
});

describe("error codes: BackgroundWorker", () => {
  it("outside a worker, connectWorkerToSpi and transaction: ERR_BGWORKER_NOT_IN_WORKER", async () => {
    await failsWith(() => BackgroundWorker.connectWorkerToSpi(), Error, "ERR_BGWORKER_NOT_IN_WORKER", /not in a background worker/);
    await failsWith(() => BackgroundWorker.transaction(() => 1), Error, "ERR_BGWORKER_NOT_IN_WORKER");
    await failsWith(() => BackgroundWorker.attachSignalHandlers(1), Error, "ERR_BGWORKER_NOT_IN_WORKER");
    await failsWith(() => BackgroundWorker.waitLatch(), Error, "ERR_BGWORKER_NOT_IN_WORKER");
  });

  describe("in a stand-in worker role", () => {
    let role: WorkerRole;
    const make = (spi: boolean): WorkerRole => {
      const builder = new BackgroundWorkerBuilder("coded").setLibrary("./lib.ts").setFunction("main");
      const definition = definitionOf(spi ? builder.enableSpiAccess() : builder);
      const start: StartMessage = {
        t: "start", definition, slot: 0, generation: 1, postmasterId: "pm-test", postmasterPid: process.pid, cwd: "/",
        database: { host: "127.0.0.1", port: 1, user: "u", database: "d" }, shmem: null, cluster: null,
      };
      const hooks = {
        postmasterAlive: () => true,
        log: () => undefined,
        fatal: (message: string): never => assert.fail(`fatal: ${message}`),
        sessionOpened: () => undefined,
      };
      const made = new WorkerRole(start, new Latch(), {} as Launcher, hooks);
      takeRole(made);
      return made;
    };
    after(() => leaveRole(role));

    it("attachSignalHandlers(16): ERR_BGWORKER_INVALID_VALUE", async () => {
      role = make(false);
      await failsWith(() => BackgroundWorker.attachSignalHandlers(16), TypeError, "ERR_BGWORKER_INVALID_VALUE");
    });

    it("waitLatch while another waitLatch waits: ERR_BGWORKER_LATCH_BUSY", async () => {
      const first = BackgroundWorker.waitLatch(null);
      await failsWith(() => BackgroundWorker.waitLatch(null), Error, "ERR_BGWORKER_LATCH_BUSY", /another waitLatch\(\) of this worker is already waiting/);
      BackgroundWorker.setLatch();
      assert.equal(await first, true, "the first wait is undisturbed");
    });

    it("connectWorkerToSpi without enableSpiAccess(): ERR_BGWORKER_SPI_NOT_ENABLED", async () => {
      await failsWith(() => BackgroundWorker.connectWorkerToSpi(), Error, "ERR_BGWORKER_SPI_NOT_ENABLED", /was not registered with enableSpiAccess\(\)/);
    });

    it("connectWorkerToSpi a second time: ERR_BGWORKER_SPI_ALREADY_CONNECTED", async () => {
      leaveRole(role);
      role = make(true);
      void BackgroundWorker.connectWorkerToSpi().catch(() => undefined); // a first connect, still waiting for the server
      await failsWith(() => BackgroundWorker.connectWorkerToSpi(), Error, "ERR_BGWORKER_SPI_ALREADY_CONNECTED", /is already connected; a worker connects once/);
    });
  });
});

describe("error codes: the control socket's path", () => {
  const deep = `/${"d".repeat(60)}/${"e".repeat(60)}/bgworker.sock`;

  it("a path over 107 bytes, relative too: RangeError ERR_BGWORKER_SOCKET_PATH_TOO_LONG", async () => {
    await failsWith(() => socketAddress(deep, "/elsewhere"), RangeError, "ERR_BGWORKER_SOCKET_PATH_TOO_LONG", /must be at most 107 bytes/);
  });

  it("connect() to such a path rejects with it, before any connection", async () => {
    await failsWith(() => connect(deep), RangeError, "ERR_BGWORKER_SOCKET_PATH_TOO_LONG");
  });
});

describe("error codes: the database layer", () => {
  let dir: string;
  const owner: ServerOwner = { name: "tester" };
  const binaries: PgBinaries = { bindir: "/nonexistent/bgworker-test/bin", version: "17.2", source: "PATH", kind: "system" };
  /** A cluster whose programs do not exist: nothing can start. */
  const clusterAt = (pgdata: string, by: ServerOwner = owner): Cluster =>
    new (Cluster as unknown as new (pgdata: string, binaries: PgBinaries, owner: ServerOwner) => Cluster)(pgdata, binaries, by);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "bgw-codes-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("initdb into a non-empty directory that holds no cluster: ERR_BGWORKER_PGDATA_INVALID", async () => {
    const pgdata = join(dir, "notacluster");
    await mkdir(pgdata);
    await writeFile(join(pgdata, "stray.txt"), "x");
    await failsWith(() => clusterAt(pgdata).init(), Error, "ERR_BGWORKER_PGDATA_INVALID", /is not empty and holds no PostgreSQL cluster/);
  });

  it("initdb or pg_ctl start that fails: ERR_BGWORKER_DATABASE_START", async () => {
    await failsWith(() => clusterAt(join(dir, "fresh")).init(), Error, "ERR_BGWORKER_DATABASE_START", /^initdb -D failed: /);
    await failsWith(() => clusterAt(join(dir, "fresh")).start({ port: 1 }), Error, "ERR_BGWORKER_DATABASE_START", /did not start: .*\(server log: /);
  });

  it("another server program that fails: ERR_BGWORKER_SERVER_PROGRAM", async () => {
    await failsWith(() => runAs(owner, join(binaries.bindir, "pg_ctl"), ["stop"]), Error, "ERR_BGWORKER_SERVER_PROGRAM", /^pg_ctl stop failed: /);
  });

  it("as root, the data directory behind a directory the server's user cannot pass: ERR_BGWORKER_PGDATA_UNREACHABLE", async () => {
    const other: ServerOwner = { name: "nobody-test", uid: 65_534, gid: 65_534 };
    if (process.getuid?.() === 65_534) return;
    const closed = clusterAt(join(dir, "x", "pgdata"), other);
    // mkdtemp makes `dir` 0700: only its owner passes through.
    await failsWith(() => closed.assertReachable(), Error, "ERR_BGWORKER_PGDATA_UNREACHABLE", /cannot pass through/);
  });

  describe("a managed database, its cluster stood in for", () => {
    const logger = new Logger({ sink: () => undefined });
    const at = Cluster.at;
    before(() => {
      (Cluster as unknown as { at: (pgdata: string) => Promise<Cluster> }).at = async (pgdata: string) => clusterAt(pgdata);
    });
    after(() => {
      (Cluster as unknown as { at: typeof at }).at = at;
    });

    it("a cluster of another major version: ERR_BGWORKER_PGDATA_INVALID", async () => {
      const pgdata = join(dir, "old");
      await mkdir(pgdata);
      await writeFile(join(pgdata, "PG_VERSION"), "9\n");
      const db = new ManagedDatabase(pgdata, { cwd: dir, logger, embedded: false });
      await failsWith(() => db.start(), Error, "ERR_BGWORKER_PGDATA_INVALID", /holds a PostgreSQL 9 cluster, but the server binaries .* are version 17\.2/);
    });

    it("a server already running on it: ERR_BGWORKER_PGDATA_IN_USE", async () => {
      const pgdata = join(dir, "busy");
      await mkdir(pgdata);
      await writeFile(join(pgdata, "PG_VERSION"), "17\n");
      // A live pid in postmaster.pid (this process), and no record of a postmaster that started it.
      await writeFile(join(pgdata, "postmaster.pid"), `${process.pid}\n${pgdata}\n0\n5432\n`);
      const db = new ManagedDatabase(pgdata, { cwd: dir, logger, embedded: false });
      await failsWith(() => db.start(), Error, "ERR_BGWORKER_PGDATA_IN_USE", /a PostgreSQL server \(pid \d+\) is already running/);
    });

    it("connection parameters before start: ERR_BGWORKER_FAILED", async () => {
      const db = new ManagedDatabase(join(dir, "never"), { cwd: dir, logger, embedded: false });
      await failsWith(() => db.connectionParams(), Error, "ERR_BGWORKER_FAILED", /not started yet/);
    });
  });

  it("no password anywhere when the server asks for one: ERR_BGWORKER_NO_PASSWORD", async () => {
    const saved = { PGPASSWORD: process.env["PGPASSWORD"], PGPASSFILE: process.env["PGPASSFILE"] };
    delete process.env["PGPASSWORD"];
    process.env["PGPASSFILE"] = join(dir, "no-such-pgpass");
    try {
      const password = passwordOf({ host: "127.0.0.1", port: 5432, user: "app", database: "app" });
      assert.equal(typeof password, "function", "asked only when the server wants one");
      await failsWith(() => (password as () => Promise<string>)(), Error, "ERR_BGWORKER_NO_PASSWORD", /^no password supplied for user "app"/);
    } finally {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });
});
