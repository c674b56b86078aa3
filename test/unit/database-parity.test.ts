/** Pure parts of the database parity work: `start`'s URL checks and sources, passwords kept out of sight, reasons. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import pg from "pg";
import { parseStart } from "../../src/cli/start.js";
import { UsageError } from "../../src/cli/usage.js";
import { reasonOf } from "../../src/database/monitor.js";
import { withoutPassword } from "../../src/database/options.js";

const params = { host: "db", port: 5432, user: "app", database: "app" };

describe("start: the database URL", () => {
  test("a malformed --database URL is a usage error naming the option, never repeating the URL", () => {
    for (const [url, rule] of [
      ["postgres://u:secret@h:99999/db", /^--database: not a valid URL/],
      ["mysql://u:secret@h/db", /^--database: scheme "mysql" is not PostgreSQL's/],
      ["postgres://u:secret@h/a/b", /^--database: database name "a\/b" must not contain "\/"/],
    ] as const) {
      assert.throws(() => parseStart(["x.ts", "--database", url], {}), (error: unknown) => {
        assert.ok(error instanceof UsageError);
        assert.match(error.message, rule);
        assert.ok(!error.line().includes("secret"));
        return true;
      });
    }
  });

  test("BGWORKER_DATABASE_URL is used when no database option is given, and checked the same way", () => {
    const url = "postgres://app:pw@db:5433/app";
    assert.deepEqual(parseStart(["x.ts"], { BGWORKER_DATABASE_URL: url }).database, { url });
    assert.deepEqual(parseStart(["x.ts", "--no-database"], { BGWORKER_DATABASE_URL: url }).database, false);
    assert.deepEqual(parseStart(["x.ts", "--database", "postgres://h/d"], { BGWORKER_DATABASE_URL: url }).database, { url: "postgres://h/d" });
    assert.equal(parseStart(["x.ts"], { BGWORKER_DATABASE_URL: "" }).database, "embedded");
    assert.throws(() => parseStart(["x.ts"], { BGWORKER_DATABASE_URL: "http://x" }), /^UsageError: BGWORKER_DATABASE_URL: scheme "http"/);
  });

  test("withoutPassword removes the password from the user part and the query, or says there is none", () => {
    assert.equal(withoutPassword("postgres://app:s%40cret@db:5432/app"), "postgres://app@db:5432/app");
    assert.equal(withoutPassword("postgres://app@db/app?password=secret&sslmode=disable"), "postgres://app@db/app?sslmode=disable");
    assert.equal(withoutPassword("postgres://app@db/app"), null);
    assert.equal(withoutPassword("not a url"), null);
  });
});

describe("why the database cannot be reached", () => {
  test("network errors in libpq's words, server errors with PostgreSQL's message", () => {
    const refused = Object.assign(new Error("connect ECONNREFUSED 1.2.3.4:5432"), { code: "ECONNREFUSED" });
    assert.equal(reasonOf(refused, params), 'connection to server at "db", port 5432 failed: Connection refused');
    const unknownHost = Object.assign(new Error("getaddrinfo ENOTFOUND db"), { code: "ENOTFOUND" });
    assert.equal(reasonOf(unknownHost, params), 'could not translate host name "db" to address');
    const auth = new pg.DatabaseError('password authentication failed for user "app"', 0, "error");
    auth.code = "28P01";
    assert.equal(reasonOf(auth, params), 'connection to server at "db", port 5432 failed: password authentication failed for user "app"');
    const socket = { ...params, host: "/run/postgresql" };
    assert.equal(reasonOf(refused, socket), 'connection to server on socket "/run/postgresql/.s.PGSQL.5432" failed: Connection refused');
  });
});
