/**
 * One acceptance of SPEC §4, two modes (issue #19): the same worker fixtures (test/both-modes/fixtures) and the
 * same cases with their expected results (test/both-modes/cases.ts) run
 * - out-of-server: `bgworker start` with the fixture extension, serving a throwaway cluster's database;
 * - in-server: the same extension in `bgworker.modules` of a throwaway cluster with `shared_preload_libraries =
 *   bgworker` (skipped, saying why, exactly where test/integration/in-server.test.ts is skipped).
 * Each runner only starts its mode, says how it finds a worker's pid, triggers the cases and reads the table.
 * Nothing waits for a fixed time; every process is stopped by pid, also when a case fails.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { connect, type PostmasterClient } from "bgworker";
import type { ConnectionParams } from "../../src/database/types.js";
import { ACCEPTANCE_DATABASE, ACCEPTANCE_PATIENCE_MS, ACCEPTANCE_SCHEMA, CASES, checkCase, until, type Mode, type ModeRunner } from "../both-modes/cases.js";
import { ACCEPTANCE_WORKERS, typeOf } from "../both-modes/fixtures/extension.js";
import { createTestCluster, type TestCluster } from "../helpers/cluster.js";
import { inServerSetup, installExtension, startInServerCluster, type InServerCluster } from "../helpers/in-server.js";
import { ROOT, startPostmaster, type RunningPostmaster } from "../helpers/postmaster.js";

const EXTENSION = join(ROOT, "test", "both-modes", "fixtures", "extension.ts");

async function query<R extends Record<string, unknown>>(params: ConnectionParams, sql: string, values: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ ...params });
  client.on("error", () => undefined);
  await client.connect();
  try {
    return (await client.query<R>(sql, values)).rows;
  } finally {
    await client.end();
  }
}

/** The acceptance database and its tables, made before any worker starts. */
async function prepare(params: ConnectionParams): Promise<void> {
  await query(params, `create database ${ACCEPTANCE_DATABASE}`);
  await query({ ...params, database: ACCEPTANCE_DATABASE }, ACCEPTANCE_SCHEMA);
}

function nameOfType(type: string): string {
  const worker = ACCEPTANCE_WORKERS.find((w) => typeOf(w) === type);
  if (worker === undefined) throw new Error(`no acceptance worker of type "${type}"`);
  return worker.name;
}

/** The cases as node:test tests, against the runner that the suite's `before` made. */
function acceptance(mode: Mode, runner: () => ModeRunner): void {
  for (const c of CASES) {
    it(`${mode}: ${c.title}`, { timeout: ACCEPTANCE_PATIENCE_MS * 2 }, () => checkCase(runner(), c));
  }
}

describe("SPEC §4 acceptance, out-of-server (bgworker start)", () => {
  let cluster: TestCluster | undefined;
  let pm: RunningPostmaster | undefined;
  let client: PostmasterClient | undefined;
  let runner: ModeRunner | undefined;

  before(async () => {
    cluster = await createTestCluster();
    await prepare(cluster.params);
    const params = { ...cluster.params, database: ACCEPTANCE_DATABASE };
    pm = await startPostmaster({
      extensions: [EXTENSION],
      args: ["--database", `postgres://postgres@127.0.0.1:${params.port}/${ACCEPTANCE_DATABASE}`, "--max-worker-processes", "32"],
    });
    client = await connect(pm.socket);
    const c = client;
    runner = {
      mode: "out-of-server",
      query: (sql, values) => query(params, sql, values),
      // A worker is its own Node process, which the status names.
      workerPid: (type) =>
        until(`a running worker of type "${type}"`, async () => {
          const row = (await c.status()).find((r) => r.name === nameOfType(type) && r.state === "running");
          return row?.pid ?? undefined;
        }),
    };
  });

  after(async () => {
    try {
      await client?.close();
    } finally {
      try {
        await pm?.close(); // checks that no worker process outlived the postmaster
      } finally {
        await cluster?.stop();
      }
    }
  });

  acceptance("out-of-server", () => {
    assert.ok(runner !== undefined, "the out-of-server runner did not start (see the hook's error)");
    return runner;
  });
});

const setup = inServerSetup();

describe("SPEC §4 acceptance, in-server (shared_preload_libraries = bgworker)", { skip: typeof setup === "string" ? setup : false }, () => {
  let server: InServerCluster | undefined;
  let runner: ModeRunner | undefined;

  before(async () => {
    if (typeof setup === "string") return;
    installExtension(setup);
    server = await startInServerCluster(
      setup,
      { "bgworker.modules": EXTENSION, "bgworker.database": ACCEPTANCE_DATABASE, max_worker_processes: 32 },
      prepare,
    );
    const params = { ...server.params, database: ACCEPTANCE_DATABASE };
    runner = {
      mode: "in-server",
      query: (sql, values) => query(params, sql, values),
      // A worker is its backend: pg_stat_activity shows it with backend_type = its type.
      workerPid: (type) =>
        until(`a backend of type "${type}"`, async () => {
          const [row] = await query<{ pid: number }>(params, "select pid from pg_stat_activity where backend_type = $1", [type]);
          return row?.pid;
        }),
    };
  }, { timeout: 600_000 });

  after(async () => {
    const killed = (await server?.stop()) ?? [];
    assert.deepEqual(killed, [], `processes outlived the server's fast stop and were killed: ${killed.join(", ")}`);
  });

  acceptance("in-server", () => {
    assert.ok(runner !== undefined, "the in-server runner did not start (see the hook's error)");
    return runner;
  });
});
