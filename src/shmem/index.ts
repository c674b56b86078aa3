/**
 * Shared memory: `PgAtomic`, `PgLwLock` and `pgShmemInit` for users; `ShmemHost`, `attachShmem`,
 * `denyShmem` and `cleanupStaleSegments` for the postmaster and the worker runtime.
 */
export { PgAtomic, type AtomicType, type AtomicValue } from "./atomic.js";
export { PgLwLock, type NotPromise } from "./lwlock.js";
export type {
  ArrayField,
  FieldType,
  FieldValue,
  Layout,
  ReadonlyFieldValue,
  ReadonlySharedArrayView,
  ReadonlyStructValue,
  ScalarType,
  ScalarValue,
  SharedArrayView,
  StructValue,
  Utf8Field,
} from "./layout.js";
export { pgShmemInit, type ShmemInitContext } from "./init.js";
export type { ShmemStructure } from "./structure.js";
export { ShmemHost, DEFAULT_SEGMENT_PREFIX, type ShmemHostOptions } from "./host.js";
export { attachShmem, detachShmem, denyShmem } from "./attach.js";
export { cleanupStaleSegments } from "./cleanup.js";
export { validateRequests } from "./requests.js";
export type { ShmemAttachment, ShmemLayoutEntry, ShmemRequest } from "./types.js";
