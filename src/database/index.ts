/**
 * The served database (SPEC §6, DESIGN "Database"): which PostgreSQL server the postmaster serves, how it is
 * run when managed, and the phase monitor that drives the workers' start times.
 */
import { join } from "node:path";
import type { Logger } from "../log.js";
import type { RestartBackoff } from "../postmaster/rules.js";
import { ExternalDatabase } from "./external.js";
import { ManagedDatabase } from "./managed.js";
import { validateDatabaseOption } from "./options.js";
import type { DatabaseOption, ServedDatabase } from "./types.js";

export type { ConnectionParams, DatabaseOption, PhaseListener, ServedDatabase } from "./types.js";
export { describeParams, parseDatabaseUrl, validateDatabaseOption } from "./options.js";
export { PhaseMonitor, type MonitorOptions } from "./monitor.js";

/** Where `"embedded"` keeps its cluster, relative to the working directory. */
export const EMBEDDED_PGDATA = join(".bgworker", "pgdata");

/**
 * The database for a `database` option. Nothing happens until `start()`; an invalid option throws a
 * `TypeError` here, naming the field, the value and the rule.
 */
export function openDatabase(
  option: DatabaseOption,
  options: { cwd: string; logger: Logger; restartBackoff?: RestartBackoff },
): ServedDatabase {
  const checked = validateDatabaseOption(option);
  if (checked === "embedded") {
    return new ManagedDatabase(join(options.cwd, EMBEDDED_PGDATA), { ...options, embedded: true });
  }
  if ("url" in checked) return new ExternalDatabase(checked.url, options.logger);
  return new ManagedDatabase(checked.pgdata, { ...options, embedded: false });
}
