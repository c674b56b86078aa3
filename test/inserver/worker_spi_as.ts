/**
 * worker_spi as another role, on another database: PostgreSQL's `worker_spi_launch(index, dboid, roleoid)`,
 * whose worker connects with `BackgroundWorkerInitializeConnectionByOid(dboid, roleoid)`. The role is passed
 * explicitly, as `connectWorkerToSpi(dbname, username)` takes it: with none, an in-server worker connects as
 * the bootstrap superuser, as PostgreSQL's background workers do. Both come from the worker's name,
 * "... as ROLE in DATABASE". Connected, it waits on its latch as worker_spi does between rounds, until SIGTERM.
 */
import { BackgroundWorker, SignalWakeFlags } from "bgworker";

export async function worker_spi_main_as(): Promise<void> {
  const name = BackgroundWorker.getName();
  const target = / as (\S+) in (\S+)$/.exec(name);
  if (target === null) throw new Error(`worker_spi_main_as: name ${JSON.stringify(name)} does not end with " as ROLE in DATABASE"`);
  const [, role, database] = target;
  BackgroundWorker.attachSignalHandlers(SignalWakeFlags.SIGHUP | SignalWakeFlags.SIGTERM);
  await BackgroundWorker.connectWorkerToSpi(database, role);
  console.log(`${name} connected`);
  while (await BackgroundWorker.waitLatch(null)) BackgroundWorker.sighupReceived();
  process.exit(1);
}
