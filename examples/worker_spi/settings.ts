/**
 * worker_spi's settings. PostgreSQL defines them as GUCs (`worker_spi.total_workers`, `worker_spi.naptime`,
 * `worker_spi.database`); here they come from environment variables, read by the postmaster in `_PG_init`
 * (every worker process inherits the postmaster's environment). A bad value is refused with one line that
 * names the variable, the value and the rule, so `bgworker start` fails before any worker runs.
 */
import { fileURLToPath } from "node:url";

/** PostgreSQL's NAMEDATALEN is 64: identifiers (database names included) are at most 63 bytes. */
const MAX_IDENTIFIER_BYTES = 63;

export interface WorkerSpiSettings {
  /** `worker_spi.total_workers`: how many static workers `_PG_init` registers (1 to 100, default 2). */
  readonly totalWorkers: number;
  /** `worker_spi.naptime`: seconds between two rounds (1 to 2147483647, default 10). */
  readonly naptimeSeconds: number;
  /** `worker_spi.database`: the database to connect to; null = the postmaster's database. */
  readonly database: string | null;
}

function integer(name: string, fallback: number, min: number, max: number, env: NodeJS.ProcessEnv): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return fallback;
  const value = raw.trim();
  if (!/^[0-9]+$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new RangeError(`worker_spi: ${name} ${JSON.stringify(raw)} must be a whole number from ${min} to ${max}`);
  }
  return Number(value);
}

function database(env: NodeJS.ProcessEnv): string | null {
  const raw = env.WORKER_SPI_DATABASE;
  if (raw === undefined || raw === "") return null;
  if (Buffer.byteLength(raw, "utf8") > MAX_IDENTIFIER_BYTES || raw.includes("\0")) {
    throw new RangeError(`worker_spi: WORKER_SPI_DATABASE ${JSON.stringify(raw)} must be a database name of at most ${MAX_IDENTIFIER_BYTES} bytes`);
  }
  return raw;
}

/** Reads and validates every setting; throws a RangeError with a one-line message on a bad value. */
export function readSettings(env: NodeJS.ProcessEnv = process.env): WorkerSpiSettings {
  return {
    totalWorkers: integer("WORKER_SPI_TOTAL_WORKERS", 2, 1, 100, env),
    naptimeSeconds: integer("WORKER_SPI_NAPTIME", 10, 1, 2_147_483_647, env),
    database: database(env),
  };
}

/** The module holding `worker_spi_main`, beside this one (`.ts` here, `.js` once compiled). */
export const WORKER_LIBRARY = fileURLToPath(new URL(import.meta.url.endsWith(".ts") ? "./worker.ts" : "./worker.js", import.meta.url));
