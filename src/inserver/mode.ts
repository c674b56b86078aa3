/**
 * What in-server mode (SPEC §9) does not provide in this version, and the one check that refuses it. A process
 * is in-server when PostgreSQL runs it for the bgworker extension (a worker's Node child, or the helper that
 * runs `_PG_init()` at server start) or when such a process started it: the mark is an environment variable,
 * so it holds for every copy of this package in the process and for the programs a worker runs (the CLI).
 */
import { makeError, type CodedError } from "../errors.js";

/** Set by the in-server entry points (child.ts, register.ts) before any user module loads. */
export const IN_SERVER_ENV = "BGWORKER_IN_SERVER";

/** Marks this process (and what it starts) as in-server. */
export function markInServer(): void {
  process.env[IN_SERVER_ENV] = "1";
}

export function inServer(): boolean {
  const mark = process.env[IN_SERVER_ENV];
  return mark !== undefined && mark !== "";
}

/** The parts of the bgworker postmaster that have no in-server counterpart yet, and what to use instead. */
const MISSING = {
  "control-socket": {
    thing: "the control socket (connect() and the CLI's client commands)",
    instead:
      "inside PostgreSQL, launch dynamic workers with loadDynamic() or SELECT bgworker.launch(...), and see them in pg_stat_activity and bgworker.workers()",
  },
  http: {
    thing: "the ops HTTP server (--http)",
    instead: "the status of in-server workers is PostgreSQL's own: pg_stat_activity and bgworker.workers()",
  },
  shmem: {
    thing: "shared memory (SPEC §8: pgShmemInit(), enableShmemAccess(), PgAtomic, PgLwLock)",
    instead: "run the extension with `bgworker start` to share memory, or keep shared state in tables",
  },
  cluster: {
    thing: 'cluster scope (SPEC §10: setScope("cluster"))',
    instead: "run the extension with `bgworker start --cluster NAME` on each host, or register the worker host-scoped on one server",
  },
} as const;

export type NotInServer = keyof typeof MISSING;

/** The error for `what` (the call that needs it) using `feature` in-server. */
export function notInServerError(what: string, feature: NotInServer, caller?: Function): CodedError {
  const { thing, instead } = MISSING[feature];
  return makeError(Error, "ERR_BGWORKER_NOT_IN_SERVER", `${what}: ${thing} is not available in in-server mode in this version: ${instead}`, caller);
}

/** Throws `notInServerError` when this process is in-server; does nothing elsewhere. */
export function assertNotInServer(what: string, feature: NotInServer, caller?: Function): void {
  if (inServer()) throw notInServerError(what, feature, caller);
}
