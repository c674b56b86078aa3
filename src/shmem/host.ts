/** `ShmemHost`: the postmaster's side of shared memory, one segment holding every requested structure. */
import { fail, show } from "../errors.js";
import { HEADER_SIZE, processStartTime, writeHeader } from "./header.js";
import { roundUp } from "./layout.js";
import { shmAddon } from "./native.js";
import { validateRequests } from "./requests.js";
import { makeViews, setMapping, shmemState, type Mapping } from "./state.js";
import type { ShmemAttachment, ShmemLayoutEntry, ShmemRequest } from "./types.js";

/** Segment names are `/<prefix>.<pid of the creating postmaster>.<n>`. */
export const DEFAULT_SEGMENT_PREFIX = "bgworker";
const PREFIX_RULE = /^[A-Za-z0-9_-]{1,64}$/;

export interface ShmemHostOptions {
  /** First part of segment names; letters, digits, `_` and `-`. Default "bgworker". */
  readonly prefix?: string;
}

/**
 * The segment of one postmaster. `create()` makes a fresh zeroed segment at start and after each
 * crash-restart (unlinking the previous one: workers still mapping it keep their pages until they exit,
 * and no new process can reach it); `destroy()` removes it at exit. The host also destroys its segment
 * on this process's 'exit', so that an ordinary exit never leaves one in /dev/shm.
 */
export class ShmemHost {
  /** Total bytes of the segment: a 64-byte header, then each structure on its own 64-byte line. */
  readonly size: number;
  readonly #layout: readonly ShmemLayoutEntry[];
  readonly #prefix: string;
  #generation = 0;
  #segment: { readonly path: string; readonly buffer: SharedArrayBuffer; readonly mapping: Mapping } | undefined;
  readonly #onExit = (): void => this.destroy();

  /** Places `requests` (checked: well-formed, unique names). Nothing is created until `create()`. */
  constructor(requests: readonly ShmemRequest[], options: ShmemHostOptions = {}) {
    validateRequests(requests, ShmemHost);
    const prefix = options.prefix ?? DEFAULT_SEGMENT_PREFIX;
    if (typeof prefix !== "string" || !PREFIX_RULE.test(prefix)) {
      fail(TypeError, `ShmemHost: prefix ${show(prefix)} must be 1 to 64 letters, digits, "_" or "-"`, ShmemHost);
    }
    this.#prefix = prefix;
    let offset = HEADER_SIZE;
    const layout: ShmemLayoutEntry[] = [];
    for (const request of requests) {
      offset = roundUp(offset, Math.max(request.align, 8));
      layout.push(
        Object.freeze({ name: request.name, kind: request.kind, offset, size: request.size, signature: request.signature }),
      );
      offset += request.size;
    }
    this.#layout = Object.freeze(layout);
    this.size = roundUp(offset, 64);
  }

  /** What workers need to attach to the current segment, or undefined before `create()` and after `destroy()`. */
  get attachment(): ShmemAttachment | undefined {
    return this.#segment?.mapping.attachment;
  }

  /**
   * Creates a fresh zeroed segment, destroying this host's previous one, attaches this process to it
   * (so the startup hooks can initialise it) and returns what workers need to attach.
   */
  create(): ShmemAttachment {
    this.destroy();
    const addon = shmAddon();
    const generation = ++this.#generation;
    const path = `/${this.#prefix}.${process.pid}.${++shmemState.segments}`;
    let buffer: SharedArrayBuffer;
    try {
      buffer = addon.create(path, this.size);
    } catch (error) {
      // The name holds this process's pid and a number it never used, so an existing segment of that name was
      // left by an earlier process that had the same pid and was killed: it is stale.
      if ((error as { code?: unknown }).code !== "EEXIST") throw error;
      addon.unlink(path);
      buffer = addon.create(path, this.size);
    }
    writeHeader(buffer, { generation, pid: process.pid, startTime: processStartTime(process.pid) ?? 0n, size: this.size });
    const attachment: ShmemAttachment = Object.freeze({ path, size: this.size, generation, layout: this.#layout });
    const mapping: Mapping = {
      attachment,
      buffer,
      entries: new Map(this.#layout.map((entry) => [entry.name, entry])),
      views: makeViews(buffer),
      owner: "host",
    };
    this.#segment = { path, buffer, mapping };
    shmemState.denied = undefined;
    setMapping(mapping);
    process.on("exit", this.#onExit);
    return attachment;
  }

  /** Unmaps and unlinks the segment. Idempotent and synchronous (safe in a process 'exit' handler). */
  destroy(): void {
    const segment = this.#segment;
    if (segment === undefined) return;
    this.#segment = undefined;
    process.off("exit", this.#onExit);
    if (shmemState.mapping === segment.mapping) setMapping(undefined);
    const addon = shmAddon();
    try {
      addon.unmap(segment.buffer);
    } finally {
      addon.unlink(segment.path);
    }
  }
}
