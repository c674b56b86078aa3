/**
 * worker_spi as another role, on another database: PostgreSQL's `worker_spi_launch(index, dboid, roleoid)`.
 * The unchanged example worker reads its database from WORKER_SPI_DATABASE and connects with the default
 * role (PGUSER of its environment); this wrapper takes both from its name, "... as ROLE in DATABASE", and
 * runs it.
 */
import { BackgroundWorker, type Datum } from "bgworker";
import { worker_spi_main } from "../../examples/worker_spi/worker.js";

export async function worker_spi_main_as(arg: Datum): Promise<void> {
  const target = / as (\S+) in (\S+)$/.exec(BackgroundWorker.getName());
  if (target === null) throw new Error(`worker_spi_main_as: name ${JSON.stringify(BackgroundWorker.getName())} does not end with " as ROLE in DATABASE"`);
  process.env["PGUSER"] = target[1];
  process.env["WORKER_SPI_DATABASE"] = target[2];
  await worker_spi_main(arg);
}
