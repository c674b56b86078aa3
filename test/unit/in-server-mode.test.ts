/**
 * What in-server mode (SPEC §9) does not provide yet fails at its boundary with one line and the code
 * ERR_BGWORKER_NOT_IN_SERVER (src/inserver/mode.ts), and only in-server; and the one piece of code that runs
 * a worker's function in both worker programs (src/runtime/run-function.ts) maps outcomes as SPEC §4 says.
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { BackgroundWorkerBuilder, definitionOf } from "../../src/builder.js";
import { parseStartCommand } from "../../src/cli/start.js";
import { connect } from "../../src/control/client.js";
import { ERROR_CODES } from "../../src/errors.js";
import { IN_SERVER_ENV, inServer, markInServer, notInServerError } from "../../src/inserver/mode.js";
import { runFunction, WorkerExit } from "../../src/runtime/run-function.js";
import { PgAtomic, pgShmemInit } from "../../src/shmem/index.js";

async function caught(fn: () => unknown): Promise<Error & { code?: unknown }> {
  try {
    await fn();
  } catch (error) {
    assert.ok(error instanceof Error, String(error));
    return error;
  }
  return assert.fail("expected an error");
}

/** One line, the code, in-server mode named, the thing named, and what to do instead. */
function assertNotInServer(error: Error & { code?: unknown }, thing: RegExp, instead: RegExp): void {
  assert.equal(error.code, "ERR_BGWORKER_NOT_IN_SERVER", error.message);
  assert.ok((ERROR_CODES as readonly string[]).includes("ERR_BGWORKER_NOT_IN_SERVER"));
  assert.ok(!error.message.includes("\n"), "one line");
  assert.match(error.message, /is not available in in-server mode/);
  assert.match(error.message, thing);
  assert.match(error.message, instead);
}

describe("not in-server yet: ERR_BGWORKER_NOT_IN_SERVER", () => {
  afterEach(() => {
    delete process.env[IN_SERVER_ENV];
  });

  it("the mark is the environment (so a program a worker runs, the CLI, sees it too)", () => {
    assert.equal(inServer(), false);
    markInServer();
    assert.equal(inServer(), true);
    assert.equal(process.env[IN_SERVER_ENV], "1");
  });

  it("connect(): the control socket", async () => {
    markInServer();
    const error = await caught(() => connect("/nonexistent/bgworker.sock"));
    assertNotInServer(error, /^connect: the control socket \(connect\(\) and the CLI's client commands\)/, /bgworker\.launch\(.*pg_stat_activity/);
  });

  it("bgworker start --http: the ops HTTP server, refused before anything starts", async () => {
    markInServer();
    const error = await caught(() => parseStartCommand(["ext.ts", "--no-database", "--http", "9187"], process.env, "/tmp"));
    assertNotInServer(error, /^bgworker start --http: the ops HTTP server \(--http\)/, /pg_stat_activity and bgworker\.workers\(\)/);
    delete process.env[IN_SERVER_ENV];
    assert.equal(parseStartCommand(["ext.ts", "--no-database", "--http", "9187"], process.env, "/tmp").ops.http?.port, 9187, "outside in-server mode --http is taken");
  });

  it("pgShmemInit() and PgAtomic: shared memory", async () => {
    markInServer();
    const hits = new PgAtomic("in-server test hits", "u64");
    assertNotInServer(await caught(() => pgShmemInit(hits)), /^pgShmemInit: shared memory \(SPEC §8/, /`bgworker start`/);
    assertNotInServer(await caught(() => hits.get()), /^PgAtomic "in-server test hits": shared memory/, /keep shared state in tables/);
  });

  it('setScope("cluster"): cluster mode, named with what to run instead', () => {
    const error = notInServerError('load: background worker "sched" has setScope("cluster")', "cluster");
    assertNotInServer(error, /^load: background worker "sched" has setScope\("cluster"\): cluster scope \(SPEC §10/, /bgworker start` --cluster NAME|`bgworker start --cluster NAME`/);
  });

  it("outside in-server mode the same calls give their usual errors", async () => {
    assert.equal((await caught(() => connect("/nonexistent/bgworker.sock"))).code, "ERR_BGWORKER_NO_POSTMASTER");
    const error = await caught(() => pgShmemInit(new PgAtomic("in-server test other", "u32")));
    assert.notEqual(error.code, "ERR_BGWORKER_NOT_IN_SERVER");
    assert.match(error.message, /inside an extension's _PG_init\(\)/);
  });
});

describe("runFunction: one way to run a worker's function, for the runner and the in-server child", () => {
  const definition = (fn: string) => definitionOf(new BackgroundWorkerBuilder("runs").setLibrary("./lib.ts").setFunction(fn).setArgument(7n));

  async function run(fn: string, exports: Record<string, unknown>): Promise<{ events: string[]; exits: number[] }> {
    const events: string[] = [];
    const exits: number[] = [];
    await runFunction(
      definition(fn),
      async () => exports,
      () => events.push("entered"),
      { log: (level, message) => events.push(`${level} ${message}`), exit: (code) => void exits.push(code) },
    );
    return { events, exits };
  }

  it("enters, then calls the function with its argument; a return is exit 0", async () => {
    const seen: unknown[] = [];
    const { events, exits } = await run("main", { main: (arg: unknown) => seen.push(arg) });
    assert.deepEqual(events, ["entered"]);
    assert.deepEqual(seen, [7n]);
    assert.deepEqual(exits, [0]);
  });

  it("a throw is an ERROR line and exit 1; a WorkerExit (FATAL under way) exits nothing more", async () => {
    const thrown = await run("main", { main: () => { throw new Error("boom"); } });
    assert.deepEqual(thrown.events, ["entered", 'ERROR background worker "runs": boom']);
    assert.deepEqual(thrown.exits, [1]);
    const fatal = await run("main", { main: () => { throw new WorkerExit(1); } });
    assert.deepEqual(fatal.exits, []);
  });

  it("a missing function is SPEC §3's one line and exit 1, never entered", async () => {
    const { events, exits } = await run("absent", { main: () => undefined });
    assert.deepEqual(events, ['LOG background worker "runs": function "absent" not found in library "./lib.ts"']);
    assert.deepEqual(exits, [1]);
  });
});
