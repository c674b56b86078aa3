/**
 * worker_spi_main: the worker of PostgreSQL's worker_spi sample, in TypeScript.
 *
 * Worker N connects to its database, creates schema `schemaN` with table `counted` if the schema does not
 * exist yet, then every WORKER_SPI_NAPTIME seconds (or at once on SIGHUP) folds the table's 'delta' rows
 * into its 'total' row and prints the new total:
 *
 *   insert into schema1.counted values ('total', 0), ('delta', 1);   -- then wait, or: kill -HUP <pid>
 *   worker_spi: count in schema1.counted is now 1                     -- the postmaster's log
 */
import { BackgroundWorker, SignalWakeFlags, Spi, type Datum } from "bgworker";
import { readSettings } from "./settings.js";

/** PostgreSQL's quote_identifier, for the names this worker builds itself. */
function quoteIdent(name: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(name) ? name : `"${name.replaceAll('"', '""')}"`;
}

/** Creates `schema` and its table `counted` (with the unique partial index on the total row) if the schema doesn't exist. */
async function initializeWorkerSpi(schema: string, table: string): Promise<void> {
  await BackgroundWorker.transaction(async () => {
    const found = await Spi.getOne<bigint>("select count(*) from pg_namespace where nspname = $1", [schema]);
    if (found === null) throw new Error("select count(*) from pg_namespace: null result");
    if (found === 0n) {
      // One statement, as in worker_spi.c: CREATE SCHEMA with its schema elements.
      await Spi.run(
        `CREATE SCHEMA "${schema}" ` +
          `CREATE TABLE "${table}" (type text CHECK (type IN ('total', 'delta')), value integer) ` +
          `CREATE UNIQUE INDEX "${table}_unique_total" ON "${table}" (type) WHERE type = 'total'`,
      );
    }
  });
}

export async function worker_spi_main(arg: Datum): Promise<void> {
  const index = Number(arg);
  const schema = `schema${index}`;
  const table = "counted";
  const name = BackgroundWorker.getName();

  // Signals set a flag and the latch; nothing is done inside a handler (pgrx issue #2057).
  BackgroundWorker.attachSignalHandlers(SignalWakeFlags.SIGHUP | SignalWakeFlags.SIGTERM);

  let settings = readSettings();
  await BackgroundWorker.connectWorkerToSpi(settings.database);

  console.log(`${name} initialized with ${schema}.${table}`);
  await initializeWorkerSpi(schema, table);

  const qualified = `${quoteIdent(schema)}.${quoteIdent(table)}`;
  const tableName = quoteIdent(table);
  const fold =
    `WITH deleted AS (DELETE FROM ${qualified} WHERE type = 'delta' RETURNING value), ` +
    `total AS (SELECT coalesce(sum(value), 0) as sum FROM deleted) ` +
    `UPDATE ${qualified} SET value = ${tableName}.value + total.sum FROM total WHERE type = 'total' ` +
    `RETURNING ${tableName}.value`;

  // waitLatch resolves false once SIGTERM has arrived or the postmaster is gone: then the loop ends.
  while (await BackgroundWorker.waitLatch(settings.naptimeSeconds * 1000)) {
    if (BackgroundWorker.sighupReceived()) {
      // PostgreSQL re-reads its configuration files here (ProcessConfigFile(PGC_SIGHUP)); this port
      // re-reads its settings, and the round below runs at once instead of after the naptime.
      settings = readSettings();
      console.log(`${name} got SIGHUP: configuration reloaded (naptime ${settings.naptimeSeconds} s)`);
    }
    const rows = await BackgroundWorker.transaction(() => Spi.select<{ value: number | null }>(fold));
    const value = rows[0]?.value;
    if (value !== undefined && value !== null) console.log(`count in ${schema}.${table} is now ${value}`);
  }

  // As worker_spi.c's proc_exit(1) after SIGTERM or postmaster death. The worker never restarts, so
  // exit code 1 only shows in the log; a worker with a restart time would come back after it.
  process.exit(1);
}
