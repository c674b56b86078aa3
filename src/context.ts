/**
 * Per-process state that the public API reads. It lives on `globalThis` under registered symbols, not in
 * module variables, because one process can hold more than one copy of this package (an extension or a
 * worker library may resolve `bgworker` from its own `node_modules`, or through the TypeScript loader's
 * namespace), and every copy must see the same postmaster, worker and connection.
 */
import type { WorkerDefinition } from "./definition.js";
import type { ShmemRequest } from "./shmem/types.js";

/** What `_PG_init` may do while an extension module is being initialised. */
export interface InitContext {
  /** Absolute path of the extension module being initialised: the default library of its workers. */
  readonly extension: string;
  registerStatic(definition: WorkerDefinition, startup: (() => void) | undefined): void;
  /** `pgShmemInit`'s structures, laid out in the one segment the postmaster creates at start. */
  requestShmem(requests: readonly ShmemRequest[]): void;
}

const INIT = Symbol.for("bgworker.init");
const PROCESS = Symbol.for("bgworker.process");

type Slots = { [INIT]?: InitContext; [PROCESS]?: unknown };
const slots = globalThis as typeof globalThis & Slots;

export function currentInit(): InitContext | undefined {
  return slots[INIT];
}

/** Runs `fn` (an extension's `_PG_init`) with `context` as the current initialisation. */
export async function withInit<T>(context: InitContext, fn: () => T | Promise<T>): Promise<T> {
  if (slots[INIT] !== undefined) {
    throw new Error(`cannot initialise "${context.extension}" while "${slots[INIT].extension}" is initialising`);
  }
  slots[INIT] = context;
  try {
    return await fn();
  } finally {
    delete slots[INIT];
  }
}

/**
 * The role of this process, set once: the postmaster, a worker, or a client of a postmaster. Each role
 * supplies its own object; the modules that define the roles read it back with their own type.
 */
export function processRole<T>(): T | undefined {
  return slots[PROCESS] as T | undefined;
}

export function setProcessRole(role: unknown): void {
  slots[PROCESS] = role;
}
