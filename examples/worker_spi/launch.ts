/**
 * worker_spi_launch(index): PostgreSQL's `SELECT worker_spi_launch(N)`, as a function. It starts one more
 * worker_spi worker at run time (a dynamic background worker, never restarted, this process as its notify
 * pid) and resolves once the worker's function is running, with its handle (`await worker.pid()` is the
 * pid that the SQL function returns).
 *
 * It works wherever `loadDynamic()` does: in the postmaster (e.g. from `_PG_init`'s code at run time), in a
 * worker, and in any other process on the host after `await connect(socketPath)`:
 *
 *   import { connect } from "bgworker";
 *   import { worker_spi_launch } from "./examples/worker_spi/launch.ts";
 *   const client = await connect();                  // ./.bgworker/bgworker.sock
 *   const worker = await worker_spi_launch(3);       // creates schema3.counted
 *   console.log(await worker.pid());
 */
import { BackgroundWorkerStatus, BackgroundWorkerStatusError, type DynamicBackgroundWorker } from "bgworker";
import { workerSpiBuilder } from "./registration.js";

export async function worker_spi_launch(index: number): Promise<DynamicBackgroundWorker> {
  if (!Number.isInteger(index) || index < -2_147_483_648 || index > 2_147_483_647) {
    throw new RangeError(`worker_spi_launch: index ${String(index)} must be an integer (int4)`);
  }
  // Rejects with NoFreeWorkerSlotError when every worker slot is taken (the SQL function returns NULL).
  const worker = await workerSpiBuilder(index).loadDynamic(); // the notify pid defaults to this process, so that it may wait for the startup
  try {
    await worker.waitForStartup();
  } catch (error) {
    if (error instanceof BackgroundWorkerStatusError && error.status === BackgroundWorkerStatus.Stopped) {
      throw new Error(`worker_spi_launch(${index}): could not start background process (see the postmaster's log)`, { cause: error });
    }
    if (error instanceof BackgroundWorkerStatusError && error.status === BackgroundWorkerStatus.PostmasterDied) {
      throw new Error(`worker_spi_launch(${index}): cannot start background processes without postmaster`, { cause: error });
    }
    throw error;
  }
  return worker;
}
