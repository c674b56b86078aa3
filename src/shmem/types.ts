/**
 * The data that crosses between an extension's `_PG_init`, the postmaster and its workers about shared
 * memory. All of it is plain and JSON-safe: the attachment travels to workers with their definition.
 */

/** One named structure that `pgShmemInit` asks the postmaster to place in the segment. */
export interface ShmemRequest {
  readonly name: string;
  /** "PgAtomic" or "PgLwLock". */
  readonly kind: string;
  /** Bytes the structure needs. */
  readonly size: number;
  /** Byte alignment of its start (a power of two). */
  readonly align: number;
  /**
   * Kind and layout in one canonical string (e.g. `PgAtomic(u64)`). A worker whose declaration has another
   * signature for the same name is refused: the extension and the worker disagree on the layout.
   */
  readonly signature: string;
}

/** Where one structure sits in the segment. */
export interface ShmemLayoutEntry {
  readonly name: string;
  readonly kind: string;
  readonly offset: number;
  readonly size: number;
  readonly signature: string;
}

/** What a worker needs to map the postmaster's segment: made by `ShmemHost.create()`, used by `attachShmem()`. */
export interface ShmemAttachment {
  /** The POSIX shared memory name (`/bgworker.<pid>.<n>`; on Linux the file `/dev/shm/bgworker.<pid>.<n>`). */
  readonly path: string;
  /** Total bytes of the segment. */
  readonly size: number;
  /** Counts the segments this host has created: 1 at start, +1 per crash-restart. */
  readonly generation: number;
  readonly layout: readonly ShmemLayoutEntry[];
}
