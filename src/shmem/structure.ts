/**
 * What `PgAtomic` and `PgLwLock` share: the name rule, the request they give `pgShmemInit`, and finding
 * their place in this process's mapping.
 */
import { fail, show } from "../errors.js";
import { inServer, notInServerError } from "../inserver/mode.js";
import type { PgAtomic } from "./atomic.js";
import type { Layout } from "./layout.js";
import type { PgLwLock } from "./lwlock.js";
import { shmemState, type Mapping } from "./state.js";
import type { ShmemLayoutEntry, ShmemRequest } from "./types.js";

/** PostgreSQL's SHMEM_INDEX_KEYSIZE (48) less the terminating NUL. */
export const MAX_STRUCTURE_NAME_BYTES = 47;
/** Every structure starts on its own cache line, so that unrelated structures do not slow each other down. */
export const STRUCTURE_ALIGN = 64;

/**
 * The method through which `pgShmemInit` asks a structure for its request. A registered symbol, so that a
 * structure made by another copy of this package is recognised too. It is defined on the prototypes by
 * `defineShmemRequest`, not declared in the classes, so that it is no part of their public type.
 */
export const SHMEM_REQUEST: unique symbol = Symbol.for("bgworker.shmem.request") as never;

/** A structure that can be placed in shared memory, as `pgShmemInit` takes it: a `PgAtomic` or a `PgLwLock`. */
export type ShmemStructure = PgAtomic | PgLwLock<Layout>;

/** What `pgShmemInit` sees of a structure at run time (of this copy of the package or another). */
export interface RequestsShmem {
  readonly name: string;
  [SHMEM_REQUEST](): ShmemRequest;
}

export function isShmemStructure(value: unknown): value is RequestsShmem {
  return (
    value !== null &&
    typeof value === "object" &&
    typeof (value as Partial<RequestsShmem>)[SHMEM_REQUEST] === "function"
  );
}

/** Gives a structure class its `SHMEM_REQUEST` method, outside its declared type. */
export function defineShmemRequest<T extends object>(prototype: T, request: (this: T) => ShmemRequest): void {
  Object.defineProperty(prototype, SHMEM_REQUEST, { value: request, enumerable: false, writable: false, configurable: false });
}

/** Returns the rule a structure name breaks, or undefined if it keeps them. */
export function structureNameRule(name: unknown): string | undefined {
  if (typeof name !== "string") return "must be a string";
  if (name.length === 0) return "must not be empty";
  if (name.includes("\0")) return "must not contain a NUL character";
  if (Buffer.byteLength(name) > MAX_STRUCTURE_NAME_BYTES) return `must be at most ${MAX_STRUCTURE_NAME_BYTES} UTF-8 bytes`;
  return undefined;
}

/**
 * This process's mapping and the entry of structure `name`, checked against what this process declares.
 * Throws one clear line when the process has no access, no mapping, or a different layout.
 */
export function locate(kind: string, name: string, signature: string, caller: Function): { mapping: Mapping; entry: ShmemLayoutEntry } {
  const owner = `${kind} ${JSON.stringify(name)}`;
  if (shmemState.denied !== undefined) {
    fail(
      Error,
      `background worker ${JSON.stringify(shmemState.denied)} has no shared memory access: register it with enableShmemAccess()`,
      caller,
    );
  }
  const mapping = shmemState.mapping;
  if (mapping === undefined) {
    // In-server there is never a mapping: say why, rather than how a postmaster's worker would get one.
    if (inServer()) throw notInServerError(owner, "shmem", caller);
    fail(
      Error,
      `${owner}: shared memory is not attached in this process (it is in the postmaster once started, ` +
        `and in background workers registered with enableShmemAccess())`,
      caller,
    );
  }
  const entry = mapping.entries.get(name);
  if (entry === undefined) {
    fail(Error, `${owner}: shared memory has no structure of that name: request it with pgShmemInit() in the extension's _PG_init()`, caller);
  }
  if (entry.signature !== signature) {
    fail(
      Error,
      `${owner}: this process declares ${signature} but shared memory holds ${entry.signature}: ` +
        `the extension and the worker must import the same declaration`,
      caller,
    );
  }
  return { mapping, entry };
}

export function checkName(kind: string, name: unknown, caller: Function): asserts name is string {
  const rule = structureNameRule(name);
  if (rule !== undefined) fail(TypeError, `${kind}: name ${show(name)} ${rule}`, caller);
}
