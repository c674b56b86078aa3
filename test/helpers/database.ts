/**
 * Shared by the tests that run `bgworker start` against a real database: the database worker library, a
 * postmaster with a control-socket client closed at the test's end, waits for the n-th event or log line, and
 * one-off SQL.
 */
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import pg from "pg";
import { connect, type PostmasterClient } from "bgworker";
import { Cluster } from "../../src/database/cluster.js";
import type { ConnectionParams } from "../../src/database/types.js";
import type { TestWorker } from "../fixtures/extension.js";
import { ROOT, startPostmaster, type RunningPostmaster, type WorkerEvent } from "./postmaster.js";

export const DATABASE_LIBRARY = join(ROOT, "test", "fixtures", "database", "workers.ts");

/** A static worker of test/fixtures/database/workers.ts. */
export function dbWorker(name: string, fn: string, fields: Partial<TestWorker> = {}): TestWorker {
  return { name, function: fn, library: DATABASE_LIBRARY, ...fields };
}

/** A postmaster with a control-socket client; both closed (and every worker checked gone) by the test's end. */
export async function postmasterWith(
  t: TestContext,
  args: string[],
  workers: TestWorker[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ pm: RunningPostmaster; client: PostmasterClient }> {
  const pm = await startPostmaster({ args, workers, env });
  let client: PostmasterClient | undefined;
  t.after(async () => {
    await client?.close();
    await pm.close();
  });
  client = await connect(pm.socket);
  return { pm, client };
}

/** Waits for the n-th `event` of worker `name` (1-based) and returns it. */
export async function nth(pm: RunningPostmaster, event: string, name: string, n = 1): Promise<WorkerEvent> {
  const events = await pm.waitForEvents(event, n, (e) => e.name === name);
  return events[n - 1]!;
}

/** The n-th log line (1-based) matching `pattern`. */
export function nthLog(pm: RunningPostmaster, pattern: RegExp, n = 1): Promise<{ time: string; message: string }> {
  return pm.until(`log line #${n} matching ${pattern}`, () => pm.logs(pattern)[n - 1]);
}

/** Runs `text` on a connection of its own and returns the rows. */
export async function sql(params: ConnectionParams, text: string): Promise<Record<string, unknown>[]> {
  const client = new pg.Client({ ...params });
  client.on("error", () => undefined);
  await client.connect();
  try {
    return (await client.query(text)).rows as Record<string, unknown>[];
  } finally {
    await client.end();
  }
}

/**
 * A `--pgdata` directory in a fresh temp dir that the server's OS user can reach; at the test's end a server
 * still running there is stopped (immediate) and the temp dir removed.
 */
export async function managedPgdata(t: TestContext, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  await chmod(dir, 0o755); // the server's OS user must reach its data directory
  const pgdata = join(dir, "pgdata");
  t.after(async () => {
    const cluster = await Cluster.at(pgdata).catch(() => undefined);
    if (cluster !== undefined && (await cluster.runningPid()) !== null) await cluster.stop("immediate");
    await rm(dir, { recursive: true, force: true });
  });
  return pgdata;
}
