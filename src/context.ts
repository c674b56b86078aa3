/**
 * Per-process state that the public API reads: the extension being initialised, and the role of this
 * process. It lives on `globalThis` under registered symbols, not in module variables, because one process
 * can hold more than one copy of this package (an extension or a worker library may resolve `bgworker`
 * from its own `node_modules`, or through the TypeScript loader's namespace), and every copy must see the
 * same postmaster, worker and connection.
 */
import type { WorkerDefinition } from "./definition.js";
import { makeError } from "./errors.js";
import type { Launcher } from "./launcher.js";
import type { WorkerRole } from "./runtime/worker-role.js";
import type { ShmemRequest } from "./shmem/types.js";

/** What `_PG_init` may do while an extension module is being initialised. */
export interface InitContext {
  /** Absolute path of the extension module being initialised: the default library of its workers. */
  readonly extension: string;
  registerStatic(definition: WorkerDefinition, startup: (() => void) | undefined): void;
  /** `pgShmemInit`'s structures, laid out in the one segment the postmaster creates at start. */
  requestShmem(requests: readonly ShmemRequest[]): void;
}

/** The postmaster's own process: its launcher answers in-process, with this process as the caller. */
export interface PostmasterRole {
  readonly kind: "postmaster";
  readonly launcher: Launcher;
}

/** A process that called `connect()`: its latest connection's launcher. */
export interface ClientRole {
  readonly kind: "client";
  readonly launcher: Launcher;
}

/** What a process is to bgworker; at most one at a time. */
export type ProcessRole = PostmasterRole | WorkerRole | ClientRole;

const INIT = Symbol.for("bgworker.init");
const PROCESS = Symbol.for("bgworker.process");

type ProcessGlobals = { [INIT]?: InitContext; [PROCESS]?: ProcessRole };
const globals = globalThis as typeof globalThis & ProcessGlobals;

export function currentInit(): InitContext | undefined {
  return globals[INIT];
}

/** Runs `fn` (an extension's `_PG_init`) with `context` as the current initialisation. */
export async function withInit<T>(context: InitContext, fn: () => T | Promise<T>): Promise<T> {
  if (globals[INIT] !== undefined) {
    throw makeError(Error, "ERR_BGWORKER_POSTMASTER_STATE", `cannot initialise "${context.extension}" while "${globals[INIT].extension}" is initialising`);
  }
  globals[INIT] = context;
  try {
    return await fn();
  } finally {
    delete globals[INIT];
  }
}

/** The role of this process, if it has one. */
export function processRole(): ProcessRole | undefined {
  return globals[PROCESS];
}

/** The launcher `loadDynamic()` uses in this process: the postmaster's, the worker's, or the latest client's. */
export function currentLauncher(): Launcher | undefined {
  return globals[PROCESS]?.launcher;
}

/** This process's worker role, when it is a worker. */
export function workerRole(): WorkerRole | undefined {
  const role = globals[PROCESS];
  return role?.kind === "worker" ? role : undefined;
}

/** Takes `role` for this process. A postmaster or a worker keeps its role; a client gives way to each. */
export function takeRole(role: ProcessRole): void {
  globals[PROCESS] = role;
}

/** Gives up `role`, if it is still this process's role (a later client may have replaced it). */
export function leaveRole(role: ProcessRole): void {
  if (globals[PROCESS] === role) delete globals[PROCESS];
}
