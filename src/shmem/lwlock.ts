/** `PgLwLock<T>`: PostgreSQL's lightweight lock around a struct, over shared memory. */
import { fail, show } from "../errors.js";
import { placeLayout, type Layout, type PlacedLayout, type ReadonlyStructValue, type StructValue } from "./layout.js";
import { acquireExclusive, acquireShared, releaseExclusive, releaseShared, type LockWord } from "./rwlock.js";
import { shmemState } from "./state.js";
import { checkName, defineShmemRequest, locate, STRUCTURE_ALIGN } from "./structure.js";
import type { ShmemRequest } from "./types.js";
import { makeView, Mode, type Binding } from "./view.js";

/** The lock word sits first; the struct's data follows at this offset (8, the largest field alignment). */
const DATA_OFFSET = 8;

/**
 * A section's function must return its result, not a promise: the lock cannot be held across an await
 * (other processes would wait on this one's event loop), so `async` functions are refused by type and at run time.
 */
export type NotPromise<R> = R extends PromiseLike<unknown> ? never : R;

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === "object" || typeof value === "function") &&
    typeof (value as { then?: unknown }).then === "function"
  );
}

/**
 * A struct of fixed layout in shared memory, guarded by a reader/writer lock. Read it in `share()`,
 * change it in `exclusive()`; both run a synchronous function while holding the lock. A process that has
 * to wait sleeps (futex) rather than spinning. Sections on one lock must not nest.
 */
export class PgLwLock<const L extends Layout> {
  readonly name: string;
  readonly layout: L;
  readonly #placed: PlacedLayout;
  readonly #owner: string;
  readonly #binding: Binding = { mode: Mode.None, base: 0, views: undefined };
  readonly #view: object;
  #lock: LockWord | undefined;
  #epoch = -1;

  constructor(name: string, layout: L) {
    checkName("PgLwLock", name, new.target);
    this.#owner = `PgLwLock ${JSON.stringify(name)}`;
    this.#placed = placeLayout(this.#owner, layout, new.target);
    this.name = name;
    this.layout = Object.freeze({ ...layout });
    this.#view = makeView(this.#owner, this.#placed, this.#binding);
  }

  /** Runs `fn` holding the lock in share mode (many readers at once); the struct is read-only. Returns its result. */
  share<R>(fn: (struct: ReadonlyStructValue<L>) => NotPromise<R>): R {
    return this.#section(Mode.Shared, fn as (struct: object) => unknown, this.share) as R;
  }

  /** Runs `fn` holding the lock exclusively; the struct may be written. Returns its result. */
  exclusive<R>(fn: (struct: StructValue<L>) => NotPromise<R>): R {
    return this.#section(Mode.Exclusive, fn as (struct: object) => unknown, this.exclusive) as R;
  }

  static {
    defineShmemRequest(PgLwLock.prototype, function () {
      return this.#request();
    });
  }

  /** What `pgShmemInit` requests for this structure. */
  #request(): ShmemRequest {
    return {
      name: this.name,
      kind: "PgLwLock",
      size: DATA_OFFSET + this.#placed.size,
      align: STRUCTURE_ALIGN,
      signature: this.#signature(),
    };
  }

  #signature(): string {
    return `PgLwLock${this.#placed.signature}`;
  }

  #section(mode: Mode, fn: (struct: object) => unknown, caller: Function): unknown {
    const section = mode === Mode.Shared ? "share" : "exclusive";
    if (typeof fn !== "function") fail(TypeError, `${this.#owner}: ${section} section ${show(fn)} must be a function`, caller);
    const lock = this.#bind(caller);
    if (shmemState.held.has(this.name)) {
      fail(
        Error,
        `${this.#owner}: ${section}() inside a section of the same lock would deadlock: sections on one lock must not nest`,
        caller,
      );
    }
    if (mode === Mode.Shared) acquireShared(lock);
    else acquireExclusive(lock);
    shmemState.held.add(this.name);
    this.#binding.mode = mode;
    let result: unknown;
    try {
      result = fn(this.#view);
    } finally {
      this.#binding.mode = Mode.None;
      shmemState.held.delete(this.name);
      if (mode === Mode.Shared) releaseShared(lock);
      else releaseExclusive(lock);
    }
    if (isThenable(result)) {
      // Its rejection (it will touch the struct after the section) is this error's consequence, not news.
      result.then(undefined, () => undefined);
      fail(
        TypeError,
        `${this.#owner}: the ${section}() section returned a promise, but sections must be synchronous: ` +
          `the lock was released when the function returned; do the async work before or after the section`,
        caller,
      );
    }
    return result;
  }

  #bind(caller: Function): LockWord {
    if (this.#lock !== undefined && this.#epoch === shmemState.epoch && shmemState.denied === undefined) return this.#lock;
    const { mapping, entry } = locate("PgLwLock", this.name, this.#signature(), caller);
    this.#lock = { buffer: mapping.buffer, words: mapping.views.i32, index: entry.offset / 4 };
    this.#binding.base = entry.offset + DATA_OFFSET;
    this.#binding.views = mapping.views;
    this.#epoch = shmemState.epoch;
    return this.#lock;
  }
}
