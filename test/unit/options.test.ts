/** Postmaster options and `bgworker start` arguments: defaults, and one-line errors for bad values. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseStart } from "../../src/cli/start.js";
import { UsageError } from "../../src/cli/usage.js";
import { resolveOptions } from "../../src/postmaster/options.js";

describe("Postmaster options", () => {
  it("has the documented defaults", () => {
    const options = resolveOptions({ extensions: ["./ext.ts"], cwd: "/srv/app" });
    assert.equal(options.database, "embedded");
    assert.equal(options.maxWorkerProcesses, 8);
    assert.equal(options.socketPath, "/srv/app/.bgworker/bgworker.sock");
    assert.equal(options.shutdownTimeoutMs, 10_000);
    assert.equal(options.logFormat, "text");
    assert.equal(options.spareRunners, 1);
    assert.equal(options.maxSpareRunners, 8);
    assert.equal(resolveOptions({ extensions: [], spareRunners: 12 }).maxSpareRunners, 12, "the ceiling is at least the floor");
    assert.deepEqual(options.restartBackoff, { failures: 5, fastFailureMs: 1_000, initialDelayMs: 100, maxDelayMs: 30_000, resetAfterMs: 10_000 });
  });

  it("refuses bad values naming the option, the value and the rule", () => {
    const cases: [object, string][] = [
      [{ extensions: "x" }, 'Postmaster: extensions "x" must be an array of module paths'],
      [{ extensions: [""] }, 'Postmaster: extensions[0] "" must be a non-empty module path'],
      [{ extensions: [], maxWorkerProcesses: 0 }, "Postmaster: maxWorkerProcesses 0 must be an integer from 1 to 262143"],
      [{ extensions: [], shutdownTimeoutMs: -1 }, "Postmaster: shutdownTimeoutMs -1 must be an integer from 0 to 86400000"],
      [{ extensions: [], logFormat: "xml" }, 'Postmaster: logFormat "xml" must be one of text, json'],
      [{ extensions: [], database: { host: "x" } }, 'Postmaster: database object must be "embedded", { url: string }, { pgdata: string } or false'],
      [{ extensions: [], spareRunners: 65 }, "Postmaster: spareRunners 65 must be an integer from 0 to 64"],
      [{ extensions: [], maxSpareRunners: -1 }, "Postmaster: maxSpareRunners -1 must be an integer from 0 to 64"],
      [{ extensions: [], spareRunners: 4, maxSpareRunners: 2 }, "Postmaster: maxSpareRunners 2 must be at least spareRunners (4)"],
      [{ extensions: [], restartBackoff: { failures: 1.5 } }, "Postmaster: restartBackoff.failures 1.5 must be an integer from 0 to 86400000"],
      // The URL is checked by the constructor, as strictly as start() would, and never repeated (it may hold a password).
      [{ extensions: [], database: { url: "http://u:secret@h/db" } }, 'Postmaster: database.url: scheme "http" is not PostgreSQL\'s (use postgres:// or postgresql://)'],
      [{ extensions: [], database: { url: "not a url" } }, "Postmaster: database.url: not a valid URL (expected postgres://user@host:port/database)"],
    ];
    for (const [options, message] of cases) {
      assert.throws(() => resolveOptions(options as never), { name: "TypeError", message, code: "ERR_BGWORKER_INVALID_OPTION" });
    }
  });
});

describe("bgworker start arguments", () => {
  it("maps flags to options", () => {
    assert.deepEqual(parseStart(["a.ts", "b.ts", "--no-database", "--max-worker-processes", "4", "--shutdown-timeout", "500", "--log-format", "json"]), {
      extensions: ["./a.ts", "./b.ts"], // a module file name is a file of the working directory, found or not
      database: false,
      logFormat: "json",
      maxWorkerProcesses: 4,
      shutdownTimeoutMs: 500,
    });
    assert.deepEqual(parseStart(["a.ts", "--spare-runners", "0", "--max-spare-runners", "3"]), {
      extensions: ["./a.ts"],
      database: "embedded",
      logFormat: "text",
      spareRunners: 0,
      maxSpareRunners: 3,
    });
    assert.deepEqual(parseStart(["a.ts", "--database", "postgres://x/y"]).database, { url: "postgres://x/y" });
    assert.deepEqual(parseStart(["a.ts", "--pgdata", "/d"]).database, { pgdata: "/d" });
    assert.equal(parseStart(["a.ts"]).database, "embedded");
    assert.deepEqual(parseStart(["a.ts", "--database", "postgres://x/y", "--cluster", "prod", "--node-id", "web-1", "--lease-ms", "4000", "--renew-ms", "500"]).cluster, {
      name: "prod",
      nodeId: "web-1",
      leaseMs: 4000,
      renewMs: 500,
    });
    assert.deepEqual(parseStart(["a.ts", "--database", "postgres://x/y", "--cluster", "prod"]).cluster, { name: "prod" });
  });

  it("checks the cluster option as every Postmaster option: before anything starts, naming the rule", () => {
    const refused = (options: Parameters<typeof resolveOptions>[0], message: RegExp): void => {
      assert.throws(() => resolveOptions(options), (error: Error & { code?: string }) => error.code === "ERR_BGWORKER_INVALID_OPTION" && message.test(error.message));
    };
    refused({ extensions: [], cluster: { name: "prod" } }, /cluster mode needs a database that every node reaches: give database \{ url \} \(--database URL\); this postmaster would serve its own embedded database/);
    refused({ extensions: [], database: { url: "postgres://x/y" }, cluster: { name: "prod", renewMs: 2000 } }, /cluster\.renewMs 2000 is too long for cluster\.leaseMs 5000/);
    refused({ extensions: [], database: { url: "postgres://x/y" }, cluster: { name: "" } }, /cluster\.name "" must be a non-empty string of at most 63 bytes/);
    const resolved = resolveOptions({ extensions: [], database: { url: "postgres://x/y" }, cluster: { name: "prod", nodeId: "web-1" } });
    assert.equal(resolved.cluster?.nodeId, "web-1");
    assert.equal(resolveOptions({ extensions: [] }).cluster, null);
  });

  it("refuses what does not fit, as usage errors", () => {
    const cases: [string[], string][] = [
      [[], "missing EXTENSION: give at least one extension module"],
      [["a.ts", "--no-database", "--pgdata", "/d"], "--database, --pgdata and --no-database exclude each other: give at most one"],
      [["a.ts", "--max-worker-processes", "many"], '--max-worker-processes "many" must be a whole number'],
      [["a.ts", "--log-format", "xml"], '--log-format "xml" must be one of text, json'],
      [["a.ts", "--bogus"], "unknown option --bogus"],
      [["a.ts", "--database", "postgres://x/y", "--node-id", "web-1"], "--node-id needs --cluster NAME"],
      [["a.ts", "--database", "postgres://x/y", "--cluster", "prod", "--lease-ms", "5s"], '--lease-ms "5s" must be a whole number'],
    ];
    for (const [args, message] of cases) {
      assert.throws(() => parseStart(args), (error: unknown) => error instanceof UsageError && error.message === message && error.command === "start");
    }
  });
});
