/** A worker's side of shared memory: map the postmaster's segment, or be told it has no access. */
import { fail, show } from "../errors.js";
import { HEADER_SIZE, readHeader } from "./header.js";
import { shmAddon } from "./native.js";
import { makeViews, setMapping, shmemState } from "./state.js";
import type { ShmemAttachment } from "./types.js";

/** Checks that `attachment` is a plain description that this module can trust for offsets. */
function attachmentProblem(attachment: ShmemAttachment): string | undefined {
  if (attachment === null || typeof attachment !== "object") return `attachment ${show(attachment)} must be an object`;
  const { path, size, generation, layout } = attachment;
  if (typeof path !== "string" || !path.startsWith("/")) return `path ${show(path)} must be a segment name starting with "/"`;
  if (typeof size !== "number" || !Number.isInteger(size) || size < HEADER_SIZE || size % 64 !== 0) {
    return `size ${show(size)} must be a multiple of 64 of at least ${HEADER_SIZE}`;
  }
  if (typeof generation !== "number" || !Number.isInteger(generation) || generation < 1) return `generation ${show(generation)} must be a positive integer`;
  if (!Array.isArray(layout)) return `layout ${show(layout)} must be an array`;
  for (const entry of layout) {
    const { name, offset, size: bytes } = entry;
    if (typeof name !== "string" || typeof entry.kind !== "string" || typeof entry.signature !== "string") {
      return `layout entry ${show(name)} must have a string name, kind and signature`;
    }
    if (!Number.isInteger(offset) || offset < HEADER_SIZE || offset % 8 !== 0 || !Number.isInteger(bytes) || offset + bytes > size) {
      return `layout entry ${JSON.stringify(name)} at offset ${show(offset)} of ${show(bytes)} bytes must be 8-byte aligned inside the segment`;
    }
  }
  return undefined;
}

/**
 * Maps the postmaster's segment in this (worker) process, replacing any earlier one. Structures then
 * attach by name at first use. Attaching again to the same segment does nothing.
 */
export function attachShmem(attachment: ShmemAttachment): void {
  const problem = attachmentProblem(attachment);
  if (problem !== undefined) fail(TypeError, `attachShmem: ${problem}`, attachShmem);
  const current = shmemState.mapping;
  if (current?.attachment.path === attachment.path && current.attachment.generation === attachment.generation) {
    shmemState.denied = undefined;
    return;
  }
  const addon = shmAddon();
  let buffer: SharedArrayBuffer;
  try {
    buffer = addon.open(attachment.path);
  } catch (error) {
    fail(Error, `attachShmem: cannot attach shared memory segment "${attachment.path}": ${(error as Error).message}`, attachShmem);
  }
  const header = readHeader(buffer);
  let mismatch: string | undefined;
  if (header === undefined) mismatch = "it is not a bgworker segment";
  else if (header.generation !== attachment.generation) mismatch = `it is generation ${header.generation}, not ${attachment.generation}`;
  else if (buffer.byteLength !== attachment.size || header.size !== attachment.size) {
    mismatch = `it has ${buffer.byteLength} bytes, not ${attachment.size}`;
  }
  if (mismatch !== undefined) {
    addon.unmap(buffer);
    fail(Error, `attachShmem: shared memory segment "${attachment.path}" does not match its attachment: ${mismatch}`, attachShmem);
  }
  shmemState.denied = undefined;
  setMapping({
    attachment,
    buffer,
    entries: new Map(attachment.layout.map((entry) => [entry.name, entry])),
    views: makeViews(buffer),
    owner: "attach",
  });
  if (current?.owner === "attach") addon.unmap(current.buffer);
}

/** Unmaps the segment mapped by `attachShmem`, if any. Later use of a structure throws "not attached". */
export function detachShmem(): void {
  const current = shmemState.mapping;
  if (current === undefined || current.owner !== "attach") return;
  setMapping(undefined);
  shmAddon().unmap(current.buffer);
}

/**
 * Marks this process as the worker `workerName`, registered without `enableShmemAccess()`: any later use
 * of a `PgAtomic` or `PgLwLock` throws an error that says so.
 */
export function denyShmem(workerName: string): void {
  if (typeof workerName !== "string") fail(TypeError, `denyShmem: worker name ${show(workerName)} must be a string`, denyShmem);
  detachShmem();
  shmemState.denied = workerName;
  shmemState.epoch += 1;
}
