/**
 * In-server fixtures: an extension module whose _PG_init registers the workers named by the environment
 * variable BGW_TEST_STATIC (comma-separated function names of this file), and the worker functions the TAP
 * suite (pg/t) launches with bgworker.launch().
 */
import { BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags, Spi, type Datum } from "bgworker";
import { fileURLToPath } from "node:url";

const SELF = fileURLToPath(import.meta.url);

export function _PG_init(): void {
  for (const name of (process.env["BGW_TEST_STATIC"] ?? "").split(",").filter((n) => n !== "")) {
    new BackgroundWorkerBuilder(`fixture ${name}`)
      .setType(`fixture_${name}`)
      .setLibrary(SELF)
      .setFunction(name)
      .enableSpiAccess()
      .setStartTime(BgWorkerStartTime.RecoveryFinished)
      .setRestartTime(1000)
      .load();
  }
}

/** Logs, then waits on its latch until SIGTERM; each wake-up logs. */
export async function idle(): Promise<void> {
  BackgroundWorker.attachSignalHandlers(SignalWakeFlags.SIGHUP | SignalWakeFlags.SIGTERM);
  console.log(`idle worker ${BackgroundWorker.getName()} running`);
  while (await BackgroundWorker.waitLatch(null)) {
    if (BackgroundWorker.sighupReceived()) console.log("idle worker got SIGHUP");
  }
  console.log("idle worker stopping");
  process.exit(1);
}

/** Connects and answers `select 1`, then logs the values of a few types. */
export async function values(): Promise<void> {
  await BackgroundWorker.connectWorkerToSpi();
  const row = await BackgroundWorker.transaction(() =>
    Spi.select<Record<string, unknown>>("select 1 as one, 2::int8 as big, 'x'::text as t, true as b, now() as ts, '{1,2}'::int[] as arr, $1::int + 1 as p, $2 as inferred", [41, "hello"]),
  );
  console.log(`values ${JSON.stringify(row, (_k, v) => (typeof v === "bigint" ? `${v}n` : v))}`);
}

/** Runs a long statement until pg_cancel_backend() cancels it, logs the SQLSTATE, and ends (exit 0). */
export async function cancelled(): Promise<void> {
  await BackgroundWorker.connectWorkerToSpi();
  try {
    await BackgroundWorker.transaction(() => Spi.run("select pg_sleep(60)"));
    console.log("cancelled: the statement was not cancelled");
  } catch (error) {
    console.log(`cancelled with ${(error as { code?: string }).code}: ${(error as Error).message}`);
  }
}

/** Connects, then ends as its argument says: 0 returns, 1 exits 1, 2 throws, 3 crashes Node (SIGABRT), 4 waits (to be killed). */
export async function ending(arg: Datum): Promise<void> {
  // Connected, so that pg_terminate_backend() reaches it (PostgreSQL signals only backends in its proc array).
  await BackgroundWorker.connectWorkerToSpi();
  console.log(`ending ${String(arg)} started`);
  switch (Number(arg)) {
    case 0:
      return;
    case 1:
      process.exit(1);
    case 2:
      throw new Error("thrown on purpose");
    case 3:
      process.abort();
    default:
      await BackgroundWorker.waitLatch(null);
  }
}

/** Transactions: a throw rolls back, a failed statement leaves 25P02 until rollback, a commit-time error surfaces. */
export async function transactions(): Promise<void> {
  await BackgroundWorker.connectWorkerToSpi();
  await BackgroundWorker.transaction(() => Spi.run("create table if not exists tx_probe (v int primary key)"));
  try {
    await BackgroundWorker.transaction(async () => {
      await Spi.run("insert into tx_probe values (1)");
      throw new Error("rolled back on purpose");
    });
  } catch {
    // expected
  }
  const after = await BackgroundWorker.transaction(() => Spi.getOne<bigint>("select count(*) from tx_probe"));
  console.log(`transactions: rows after a throw: ${after}`);
  const codes: string[] = [];
  try {
    await BackgroundWorker.transaction(async () => {
      try {
        await Spi.run("select 1/0");
      } catch (error) {
        codes.push((error as { code: string }).code);
      }
      try {
        await Spi.run("select 1");
      } catch (error) {
        codes.push((error as { code: string }).code);
        throw error;
      }
    });
  } catch (error) {
    codes.push(`rethrown ${(error as { code: string }).code}`);
  }
  const ok = await BackgroundWorker.transaction(() => Spi.getOne<number>("select 1"));
  console.log(`transactions: codes ${codes.join(",")}; next transaction gives ${ok}`);
  await BackgroundWorker.transaction(() =>
    Spi.run("create table if not exists tx_deferred (v int unique deferrable initially deferred)"),
  );
  try {
    await BackgroundWorker.transaction(async () => {
      await Spi.run("insert into tx_deferred values (1), (1)");
    });
    console.log("transactions: commit succeeded");
  } catch (error) {
    console.log(`transactions: commit failed with ${(error as { code: string }).code}`);
  }
}

/** Measures SELECT 1 through in-server SPI: one transaction, N statements; logs the median and p99 in us. */
export async function select1(arg: Datum): Promise<void> {
  await BackgroundWorker.connectWorkerToSpi();
  const n = arg === null ? 2000 : Number(arg);
  const times: number[] = [];
  await BackgroundWorker.transaction(async () => {
    for (let i = 0; i < n; i++) {
      const t = process.hrtime.bigint();
      await Spi.getOne("select 1");
      times.push(Number(process.hrtime.bigint() - t) / 1000);
    }
  });
  times.sort((a, b) => a - b);
  console.log(`select1: n=${n} p50=${times[Math.floor(n / 2)]!.toFixed(1)}us p99=${times[Math.floor(n * 0.99)]!.toFixed(1)}us`);
}

/** Waits for its latch, set by another worker through setLatch(pid); logs the wake-up. */
export async function latched(): Promise<void> {
  await BackgroundWorker.connectWorkerToSpi();
  console.log("latched: waiting");
  const start = Date.now();
  await BackgroundWorker.waitLatch(30_000);
  console.log(`latched: woke after ${Date.now() - start >= 30_000 ? "the timeout" : "setLatch"}`);
}

/** Sets the latch of the worker whose pid is its argument. */
export async function setter(arg: Datum): Promise<void> {
  BackgroundWorker.setLatch(Number(arg));
  console.log(`setter: set the latch of ${String(arg)}`);
  await BackgroundWorker.waitLatch(100);
}
