/** `pgShmemInit`: an extension's request for shared memory structures, made in its `_PG_init`. */
import { currentInit } from "../context.js";
import { fail, show } from "../errors.js";
import { assertNotInServer } from "../inserver/mode.js";
import { validateRequests } from "./requests.js";
import { shmemState } from "./state.js";
import { isShmemStructure, SHMEM_REQUEST, type RequestsShmem, type ShmemStructure } from "./structure.js";
import type { ShmemRequest } from "./types.js";

/** What the postmaster's init context offers for shared memory (the method `InitContext` has). */
export interface ShmemInitContext {
  requestShmem(requests: readonly ShmemRequest[]): void;
}

/**
 * Requests `structures` in the shared memory segment that the postmaster creates at start (PostgreSQL's
 * `RequestAddinShmemSpace` + `ShmemInitStruct`). Only inside an extension's `_PG_init()`. Each name may
 * be requested once.
 */
export function pgShmemInit(...structures: ShmemStructure[]): void {
  assertNotInServer("pgShmemInit", "shmem", pgShmemInit);
  const checked: RequestsShmem[] = [];
  const init = currentInit();
  if (init === undefined) {
    fail(
      Error,
      `pgShmemInit: shared memory can only be requested inside an extension's _PG_init(): the postmaster creates the segment once, at start`,
      pgShmemInit,
    );
  }
  for (const [i, structure] of structures.entries()) {
    const candidate: unknown = structure;
    if (!isShmemStructure(candidate)) {
      fail(TypeError, `pgShmemInit: argument ${i + 1} ${show(structure)} must be a PgAtomic or a PgLwLock`, pgShmemInit);
    }
    checked.push(candidate);
  }
  const requests = checked.map((structure) => structure[SHMEM_REQUEST]());
  validateRequests(requests, pgShmemInit);
  const requested = shmemState.requested.get(init) ?? new Set<string>();
  for (const request of requests) {
    if (requested.has(request.name)) {
      fail(
        Error,
        `pgShmemInit: shared memory structure ${JSON.stringify(request.name)} is already requested by this _PG_init(): request each name once`,
        pgShmemInit,
      );
    }
  }
  const host = init as Partial<ShmemInitContext>;
  if (typeof host.requestShmem !== "function") {
    fail(Error, `pgShmemInit: the postmaster initialising "${init.extension}" does not take shared memory requests`, pgShmemInit);
  }
  host.requestShmem(requests);
  for (const request of requests) requested.add(request.name);
  shmemState.requested.set(init, requested);
}
