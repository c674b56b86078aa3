/**
 * worker_spi, PostgreSQL's sample background worker (src/test/modules/worker_spi), as a bgworker extension.
 *
 *   bgworker start examples/worker_spi/extension.ts        # or: npm start
 *
 * `_PG_init` registers WORKER_SPI_TOTAL_WORKERS (default 2) static workers named "worker_spi worker N", of
 * type "worker_spi", each with database access, starting once the database accepts writes
 * (RecoveryFinished), never restarted, and with its index N as argument. Worker N keeps a count in table
 * `schemaN.counted`: see worker.ts. `worker_spi_launch()` in launch.ts starts one more at run time.
 */
import { workerSpiBuilder } from "./registration.js";
import { readSettings } from "./settings.js";

export function _PG_init(): void {
  // Every setting is checked here, so that a bad value stops `bgworker start` with one line.
  const { totalWorkers } = readSettings();

  for (let index = 1; index <= totalWorkers; index++) {
    workerSpiBuilder(index).load();
  }
}
