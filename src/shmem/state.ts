/**
 * Per-process shared memory state: which segment this process has mapped, or that it was refused
 * access. It lives on `globalThis` under a registered symbol, not in module variables, because one
 * process can hold two copies of this package, and a structure declared through one copy must find the
 * segment attached through the other.
 */
import type { ShmemAttachment, ShmemLayoutEntry } from "./types.js";

/** Typed views over the whole mapping, made once per mapping and shared by every structure. */
export interface MappingViews {
  readonly bytes: Buffer;
  readonly u8: Uint8Array;
  readonly i8: Int8Array;
  readonly u16: Uint16Array;
  readonly i16: Int16Array;
  readonly u32: Uint32Array;
  readonly i32: Int32Array;
  readonly f32: Float32Array;
  readonly f64: Float64Array;
  readonly u64: BigUint64Array;
  readonly i64: BigInt64Array;
}

/** The segment this process has mapped. */
export interface Mapping {
  readonly attachment: ShmemAttachment;
  readonly buffer: SharedArrayBuffer;
  readonly entries: ReadonlyMap<string, ShmemLayoutEntry>;
  readonly views: MappingViews;
  /** "host": mapped by a ShmemHost in this process (it unmaps it); "attach": by attachShmem. */
  readonly owner: "host" | "attach";
}

export interface ShmemProcessState {
  /**
   * Bumped whenever the mapping changes (attach, re-attach after a crash-restart, detach, deny).
   * Structures cache their place in the mapping with the epoch they saw, and look again when it moved.
   */
  epoch: number;
  mapping: Mapping | undefined;
  /** Name of this worker when it has no shared memory access. */
  denied: string | undefined;
  /** Counter for segment names made in this process, so that no two are alike. */
  segments: number;
  /** Names of the locks this process holds now: sections on one lock must not nest (they would deadlock). */
  readonly held: Set<string>;
  /** Names already requested by each `_PG_init` (keyed by its init context). */
  readonly requested: WeakMap<object, Set<string>>;
}

const STATE = Symbol.for("bgworker.shmem");
type ProcessGlobals = { [STATE]?: ShmemProcessState };
const globals = globalThis as typeof globalThis & ProcessGlobals;

export const shmemState: ShmemProcessState = (globals[STATE] ??= {
  epoch: 0,
  mapping: undefined,
  denied: undefined,
  segments: 0,
  held: new Set(),
  requested: new WeakMap(),
});

export function makeViews(buffer: SharedArrayBuffer): MappingViews {
  return {
    bytes: Buffer.from(buffer),
    u8: new Uint8Array(buffer),
    i8: new Int8Array(buffer),
    u16: new Uint16Array(buffer),
    i16: new Int16Array(buffer),
    u32: new Uint32Array(buffer),
    i32: new Int32Array(buffer),
    f32: new Float32Array(buffer),
    f64: new Float64Array(buffer),
    u64: new BigUint64Array(buffer),
    i64: new BigInt64Array(buffer),
  };
}

/** Makes `mapping` (or nothing) this process's mapping. */
export function setMapping(mapping: Mapping | undefined): void {
  shmemState.mapping = mapping;
  shmemState.epoch += 1;
}
