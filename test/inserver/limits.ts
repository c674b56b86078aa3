/**
 * In-server fixtures for what SPEC §9 leaves out of in-server mode and for what "Started" means there. Each
 * worker reports on log lines of the server (its stdout), which the TAP suite (pg/t/004_in_server_limits.pl)
 * reads.
 */
import { execFile } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { BackgroundWorker, BackgroundWorkerBuilder, connect, PgAtomic, pgShmemInit, spiClient, Spi } from "bgworker";

const SLOW = fileURLToPath(new URL("./slow.ts", import.meta.url));
const CLI = join(dirname(createRequire(import.meta.url).resolve("bgworker/package.json")), "dist", "cli", "main.js");
const HITS = new PgAtomic("limits hits", "u64");

function report(what: string, error: unknown): void {
  const { code, message } = error as { code?: unknown; message?: unknown };
  console.log(`not in server: ${what}: ${String(code)}: ${String(message)}`);
}

async function caught(what: string, fn: () => unknown): Promise<void> {
  try {
    await fn();
    console.log(`not in server: ${what}: no error`);
  } catch (error) {
    report(what, error);
  }
}

/** The CLI run by this worker: its exit status and the one line it prints on stderr. */
function cli(args: string[]): Promise<string> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 20_000, encoding: "utf8" }, (error, _stdout, stderr) => {
      resolve(`exit ${error === null ? 0 : String(error.code)}: ${stderr.trim()}`);
    });
  });
}

/** Calls each thing that is not in-server in this version and logs the error each gives. */
export async function notInServer(): Promise<void> {
  await caught("connect()", () => connect());
  await caught("pgShmemInit()", () => pgShmemInit(HITS));
  await caught("PgAtomic", () => HITS.get());
  await caught("loadDynamic() with enableShmemAccess()", () =>
    new BackgroundWorkerBuilder("shmem child").setLibrary(SLOW).setFunction("slow").enableShmemAccess().loadDynamic(),
  );
  console.log(`not in server: bgworker status: ${await cli(["status"])}`);
  console.log(`not in server: bgworker start --http: ${await cli(["start", fileURLToPath(import.meta.url), "--no-database", "--http", "127.0.0.1:0"])}`);
  // LISTEN is refused by PostgreSQL itself in a background process: no notification could reach it.
  await BackgroundWorker.connectWorkerToSpi();
  await caught("LISTEN", () => spiClient()?.query("LISTEN limits"));
  console.log("not in server: done");
}

/**
 * Launches a worker whose module takes BGW_TEST_SLOW_MS to load, then reads its handle: NotYetStarted while
 * it loads, and waitForStartup() resolves once its function has been entered (SPEC §5), not when PostgreSQL
 * forked its backend.
 */
export async function startup(): Promise<void> {
  const slowMs = Number(process.env["BGW_TEST_SLOW_MS"] ?? 3000);
  const launched = Date.now();
  const handle = await new BackgroundWorkerBuilder("slow by handle").setType("fixture slow").setLibrary(SLOW).setFunction("slow").loadDynamic();
  await new Promise((resolve) => setTimeout(resolve, slowMs / 3));
  const loading = await handle.status();
  const pid = await handle.waitForStartup();
  const waited = Date.now() - launched;
  const entered = await handle.status();
  console.log(
    `startup: while loading ${loading}; waitForStartup ${waited >= slowMs ? "after" : "before"} the function was entered; ` +
      `then ${entered}, pid ${pid === (await handle.pid()) ? "matches" : "differs"}`,
  );
  await handle.terminate().waitForShutdown();
  console.log(`startup: after terminate ${await handle.status()}`);
}

/** Connects with no role given and logs whom it runs as. */
export async function whoami(): Promise<void> {
  await BackgroundWorker.connectWorkerToSpi();
  const user = await BackgroundWorker.transaction(() => Spi.getOne<string>("select current_user::text"));
  console.log(`whoami: ${user}`);
}
