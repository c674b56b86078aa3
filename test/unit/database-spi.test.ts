import assert from "node:assert/strict";
import { describe, test } from "node:test";
import pg from "pg";
import { Spi, SpiError, spiClient, transaction } from "../../src/runtime/spi.js";

describe("Spi without a session", () => {
  test("Spi calls outside transaction() are refused, naming the call", async () => {
    await assert.rejects(Spi.run("select 1"), { message: "Spi.run: not inside BackgroundWorker.transaction()" });
    await assert.rejects(Spi.getOne("select 1"), { message: "Spi.getOne: not inside BackgroundWorker.transaction()" });
    await assert.rejects(Spi.select("select 1"), { message: "Spi.select: not inside BackgroundWorker.transaction()" });
  });

  test("transaction() without a connection says how to connect", async () => {
    await assert.rejects(transaction(() => 1), /not connected to a database \(call BackgroundWorker\.connectWorkerToSpi\(\) first\)/);
    assert.equal(spiClient(), undefined);
  });

  test("the session lives on globalThis under Symbol.for('bgworker.spi')", () => {
    assert.ok(Symbol.for("bgworker.spi") in globalThis);
  });
});

describe("SpiError", () => {
  test("keeps PostgreSQL's SQLSTATE, message and details", () => {
    const raw = new pg.DatabaseError('duplicate key value violates unique constraint "t_pkey"', 0, "error");
    raw.code = "23505";
    raw.detail = "Key (id)=(1) already exists.";
    raw.constraint = "t_pkey";
    raw.severity = "ERROR";
    const error = SpiError.from(raw);
    assert.ok(error instanceof SpiError && error instanceof Error);
    assert.equal(error.name, "SpiError");
    assert.equal(error.sqlstate, "23505");
    assert.equal(error.code, "23505");
    assert.equal(error.message, 'duplicate key value violates unique constraint "t_pkey"');
    assert.equal(error.detail, "Key (id)=(1) already exists.");
    assert.equal(error.constraint, "t_pkey");
    assert.equal(error.hint, undefined);
    assert.equal(error.cause, raw);
  });

  test("a network error becomes connection_failure (08006)", () => {
    const error = SpiError.from(new Error("Connection terminated unexpectedly"));
    assert.equal(error.sqlstate, "08006");
    assert.match(error.message, /Connection terminated unexpectedly/);
  });
});
