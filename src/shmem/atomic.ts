/** `PgAtomic`: PostgreSQL's `pg_atomic_uint32`/`pg_atomic_uint64`, one word of shared memory. */
import { fail, show } from "../errors.js";
import { shmemState } from "./state.js";
import { checkName, defineShmemRequest, locate, STRUCTURE_ALIGN } from "./structure.js";
import type { ShmemRequest } from "./types.js";

/** "u32" holds a number from 0 to 2^32-1; "u64" a bigint from 0 to 2^64-1. */
export type AtomicType = "u32" | "u64";
/** The JavaScript type of a `PgAtomic`'s value. */
export type AtomicValue<T extends AtomicType> = T extends "u64" ? bigint : number;

const U32_MAX = 0xffffffff;
const U64_MAX = 2n ** 64n - 1n;

/**
 * An atomic unsigned integer in shared memory. Declare it once at module level, in a module that both the
 * extension and its workers import; request it with `pgShmemInit` in `_PG_init`; each process attaches
 * by name at first use. Every operation is one sequentially consistent atomic instruction.
 */
export class PgAtomic<const T extends AtomicType = AtomicType> {
  readonly name: string;
  readonly type: T;
  #epoch = -1;
  #u32: Uint32Array | undefined;
  #u64: BigUint64Array | undefined;
  #index = 0;

  constructor(name: string, type: T) {
    checkName("PgAtomic", name, new.target);
    if (type !== "u32" && type !== "u64") {
      fail(TypeError, `PgAtomic ${JSON.stringify(name)}: type ${show(type)} must be "u32" (number) or "u64" (bigint)`, new.target);
    }
    this.name = name;
    this.type = type;
  }

  /** The current value. */
  get(): AtomicValue<T> {
    this.#bind(this.get);
    return (this.#u64 !== undefined ? Atomics.load(this.#u64, this.#index) : Atomics.load(this.#u32!, this.#index)) as AtomicValue<T>;
  }

  /** Stores `value`. */
  set(value: AtomicValue<T>): void {
    this.#check("set", "value", value, false, this.set);
    this.#bind(this.set);
    if (this.#u64 !== undefined) Atomics.store(this.#u64, this.#index, value as bigint);
    else Atomics.store(this.#u32!, this.#index, value as number);
  }

  /**
   * Adds `delta` (negative subtracts), wrapping around modulo 2^32 or 2^64 as PostgreSQL's
   * `pg_atomic_fetch_add`; returns the value before the addition.
   */
  add(delta: AtomicValue<T>): AtomicValue<T> {
    this.#check("add", "delta", delta, true, this.add);
    this.#bind(this.add);
    return (
      this.#u64 !== undefined ? Atomics.add(this.#u64, this.#index, delta as bigint) : Atomics.add(this.#u32!, this.#index, delta as number)
    ) as AtomicValue<T>;
  }

  /** Stores `next` if the value is `expected`; returns the value found (equal to `expected` on success). */
  compareExchange(expected: AtomicValue<T>, next: AtomicValue<T>): AtomicValue<T> {
    this.#check("compareExchange", "expected", expected, false, this.compareExchange);
    this.#check("compareExchange", "next", next, false, this.compareExchange);
    this.#bind(this.compareExchange);
    return (
      this.#u64 !== undefined
        ? Atomics.compareExchange(this.#u64, this.#index, expected as bigint, next as bigint)
        : Atomics.compareExchange(this.#u32!, this.#index, expected as number, next as number)
    ) as AtomicValue<T>;
  }

  static {
    defineShmemRequest(PgAtomic.prototype, function () {
      return this.#request();
    });
  }

  /** What `pgShmemInit` requests for this structure. */
  #request(): ShmemRequest {
    const size = this.type === "u64" ? 8 : 4;
    return { name: this.name, kind: "PgAtomic", size, align: STRUCTURE_ALIGN, signature: this.#signature() };
  }

  #signature(): string {
    return `PgAtomic(${this.type})`;
  }

  #bind(caller: Function): void {
    if (this.#epoch === shmemState.epoch && shmemState.denied === undefined) return;
    const { mapping, entry } = locate("PgAtomic", this.name, this.#signature(), caller);
    if (this.type === "u64") {
      this.#u64 = mapping.views.u64;
      this.#u32 = undefined;
      this.#index = entry.offset / 8;
    } else {
      this.#u32 = mapping.views.u32;
      this.#u64 = undefined;
      this.#index = entry.offset / 4;
    }
    this.#epoch = shmemState.epoch;
  }

  #check(method: string, what: string, value: unknown, signed: boolean, caller: Function): void {
    const where = `PgAtomic ${JSON.stringify(this.name)}: ${method} ${what} ${show(value)}`;
    if (this.type === "u64") {
      if (typeof value !== "bigint") fail(TypeError, `${where} must be a bigint (u64)`, caller);
      const min = signed ? -U64_MAX : 0n;
      if (value < min || value > U64_MAX) fail(RangeError, `${where} must be from ${min} to ${U64_MAX} (u64)`, caller);
    } else {
      if (typeof value !== "number") fail(TypeError, `${where} must be a number (u32)`, caller);
      if (!Number.isInteger(value)) fail(RangeError, `${where} must be an integer (u32)`, caller);
      const min = signed ? -U32_MAX : 0;
      if (value < min || value > U32_MAX) fail(RangeError, `${where} must be from ${min} to ${U32_MAX} (u32)`, caller);
    }
  }
}
