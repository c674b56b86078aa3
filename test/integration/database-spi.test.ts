/**
 * The SPI session (SPEC §4) against a real throwaway cluster. connectSpi opens THE session of this process,
 * so the tests run in order and disconnect between the groups that need a fresh session.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { connectSpi, disconnectSpi, Spi, SpiError, spiClient, transaction } from "../../src/runtime/spi.js";
import { createTestCluster, type TestCluster } from "../helpers/cluster.js";

let cluster: TestCluster;

before(async () => {
  cluster = await createTestCluster();
});

after(async () => {
  await disconnectSpi();
  await cluster?.stop();
});

describe("connecting", () => {
  test("a missing database rejects with PostgreSQL's message and SQLSTATE 3D000", async () => {
    await assert.rejects(connectSpi(cluster.params, { dbname: "nope", applicationName: "w" }), (error: unknown) => {
      assert.ok(error instanceof SpiError);
      assert.equal(error.sqlstate, "3D000");
      assert.equal(error.message, 'database "nope" does not exist');
      return true;
    });
    assert.equal(spiClient(), undefined, "a failed connect leaves no session");
  });

  test("a missing role rejects with 28000", async () => {
    await assert.rejects(connectSpi(cluster.params, { username: "ghost", applicationName: "w" }), {
      name: "SpiError",
      sqlstate: "28000",
      message: 'role "ghost" does not exist',
    });
  });

  test("connects once, with application_name = the worker's type", async () => {
    await connectSpi(cluster.params, { dbname: null, username: null, applicationName: "counter worker" });
    await assert.rejects(connectSpi(cluster.params, { applicationName: "again" }), /already has its database session/);
    const pid = await transaction(() => Spi.getOne<number>("select pg_backend_pid()"));
    const observer = new pg.Client({ ...cluster.params });
    observer.on("error", () => undefined);
    await observer.connect();
    try {
      const { rows } = await observer.query("select application_name, datname, usename from pg_stat_activity where pid = $1", [pid]);
      assert.deepEqual(rows, [{ application_name: "counter worker", datname: "postgres", usename: "postgres" }]);
    } finally {
      await observer.end();
    }
  });
});

describe("transactions and Spi", () => {
  before(async () => {
    await transaction(() => Spi.run("create table items (id int primary key, name text not null, n bigint)"));
  });

  test("Spi is refused outside transaction()", async () => {
    await assert.rejects(Spi.run("select 1"), { message: "Spi.run: not inside BackgroundWorker.transaction()" });
    await assert.rejects(Spi.select("select 1"), /^Error: Spi\.select: not inside/);
  });

  test("commits and returns fn's value; run() counts affected rows", async () => {
    const value = await transaction(async () => {
      const inserted = await Spi.run("insert into items values (1, 'one', 10), (2, 'two', 20)");
      assert.equal(inserted, 2);
      return "done";
    });
    assert.equal(value, "done");
    const rows = await transaction(() => Spi.select<{ id: number; name: string }>("select id, name from items order by id"));
    assert.deepEqual(rows, [{ id: 1, name: "one" }, { id: 2, name: "two" }]);
  });

  test("params, getOne's first column, null on no row, int8 as bigint", async () => {
    await transaction(async () => {
      assert.equal(await Spi.getOne<string>("select name, id from items where id = $1", [2]), "two");
      assert.equal(await Spi.getOne("select name from items where id = $1", [99]), null);
      assert.equal(await Spi.getOne<bigint>("select sum(n)::bigint from items"), 30n);
      assert.equal(await Spi.getOne<bigint>("select count(*) from items where name = any($1)", [["one", "two"]]), 2n);
      assert.equal(await Spi.run("update items set n = n + $1 where id = $2", [5, 1]), 1);
    });
  });

  test("a throw rolls back and rethrows the same error", async () => {
    const boom = new Error("boom");
    await assert.rejects(
      transaction(async () => {
        await Spi.run("insert into items values (3, 'three', 30)");
        throw boom;
      }),
      (error) => error === boom,
    );
    assert.equal(await transaction(() => Spi.getOne("select count(*)::int from items where id = 3")), 0);
  });

  test("SQL errors are SpiErrors with SQLSTATE, message and detail; the session stays usable", async () => {
    await assert.rejects(
      transaction(() => Spi.select("select * from missing_table")),
      (error: unknown) =>
        error instanceof SpiError && error.sqlstate === "42P01" && error.message === 'relation "missing_table" does not exist' && error.position === 15,
    );
    await assert.rejects(
      transaction(() => Spi.run("insert into items values (1, 'again', 0)")),
      (error: unknown) =>
        error instanceof SpiError &&
        error.sqlstate === "23505" &&
        error.detail === "Key (id)=(1) already exists." &&
        error.constraint === "items_pkey" &&
        error.table === "items",
    );
    assert.equal(await transaction(() => Spi.getOne("select 1")), 1, "after a failed transaction the next one works");
  });

  test("transactions do not nest", async () => {
    await assert.rejects(
      transaction(() => transaction(() => 1)),
      /transaction: already inside BackgroundWorker\.transaction\(\); transactions do not nest/,
    );
    assert.equal(await transaction(() => Spi.getOne("select 2")), 2);
  });

  test("spiClient() is the raw pg client of the session", async () => {
    const client = spiClient();
    assert.ok(client instanceof pg.Client);
    assert.equal((await client.query("select 3 as x")).rows[0].x, 3);
  });
});

describe("losing the server", () => {
  test("a crash does not crash this process; the next call rejects with a connection SpiError", async () => {
    await disconnectSpi();
    const doomed = await createTestCluster();
    try {
      await connectSpi(doomed.params, { applicationName: "doomed" });
      assert.equal(await transaction(() => Spi.getOne("select 1")), 1);
      await doomed.crash();
      await new Promise((resolve) => setTimeout(resolve, 200)); // the 'error'/'end' events arrive meanwhile
      await assert.rejects(transaction(() => Spi.getOne("select 1")), (error: unknown) => {
        assert.ok(error instanceof SpiError);
        assert.match(error.sqlstate, /^(08006|57P01)$/);
        return true;
      });
      await assert.rejects(transaction(() => 1), SpiError, "stays rejected: a worker connects once");
    } finally {
      await disconnectSpi();
      await doomed.stop();
    }
  });
});
