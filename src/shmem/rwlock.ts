/**
 * The reader/writer lock under `PgLwLock`: one 32-bit word of shared memory, changed only with
 * `Atomics.compareExchange`, and the futex (through the addon) so that a process that must wait sleeps
 * in the kernel instead of spinning.
 *
 * Word: bits 0-23 count the readers, WRITER marks an exclusive holder, WRITER_WAITING stops new readers
 * while a writer waits (so that a stream of overlapping readers cannot starve it), HAS_WAITERS says
 * someone sleeps on the word. The release that leaves the lock free clears every flag and, if
 * HAS_WAITERS was set, wakes all sleepers, who then race again. A sleeper sets HAS_WAITERS on the exact
 * value it then sleeps on, and the kernel compares that value before sleeping, so no wake-up is lost.
 *
 * A holder that dies by a signal leaves the lock taken; that is a crash, after which the postmaster
 * re-creates shared memory (as PostgreSQL does). Sections are synchronous, so a worker that exits any
 * other way never holds a lock.
 */
import { shmAddon } from "./native.js";

const READERS = 0x00ffffff;
const WRITER = 0x01000000;
const WRITER_WAITING = 0x02000000;
const HAS_WAITERS = 0x04000000;
/** Looks at the word this many times before sleeping: sections are short, and a sleep costs two syscalls. */
const SPINS = 100;

/** A lock word: the buffer for the futex, the view for Atomics, and the word's index in the view. */
export interface LockWord {
  readonly buffer: SharedArrayBuffer;
  readonly words: Int32Array;
  readonly index: number;
}

export function acquireShared(lock: LockWord): void {
  const { words, index } = lock;
  for (let spins = 0; ; spins++) {
    const state = Atomics.load(words, index);
    if ((state & (WRITER | WRITER_WAITING)) === 0 && (state & READERS) !== READERS) {
      if (Atomics.compareExchange(words, index, state, state + 1) === state) return;
    } else if (spins >= SPINS) {
      sleep(lock, state, HAS_WAITERS);
    }
  }
}

export function acquireExclusive(lock: LockWord): void {
  const { words, index } = lock;
  for (let spins = 0; ; spins++) {
    const state = Atomics.load(words, index);
    if ((state & (WRITER | READERS)) === 0) {
      // Keep HAS_WAITERS: others may still sleep; this writer's release wakes them.
      if (Atomics.compareExchange(words, index, state, (state & HAS_WAITERS) | WRITER) === state) return;
    } else if (spins >= SPINS) {
      sleep(lock, state, HAS_WAITERS | WRITER_WAITING);
    }
  }
}

export function releaseShared(lock: LockWord): void {
  release(lock, 1);
}

export function releaseExclusive(lock: LockWord): void {
  release(lock, WRITER);
}

function release(lock: LockWord, hold: number): void {
  const { words, index } = lock;
  for (;;) {
    const state = Atomics.load(words, index);
    let next = state - hold;
    let wake = false;
    if ((next & (WRITER | READERS)) === 0) {
      wake = (next & HAS_WAITERS) !== 0;
      next = 0;
    }
    if (Atomics.compareExchange(words, index, state, next) === state) {
      if (wake) shmAddon().wake(lock.buffer, index * 4, Infinity);
      return;
    }
  }
}

/** Marks the word with `flags` and sleeps until it changes; returns at once if it changed meanwhile. */
function sleep(lock: LockWord, state: number, flags: number): void {
  const marked = state | flags;
  if (marked !== state && Atomics.compareExchange(lock.words, lock.index, state, marked) !== state) return;
  shmAddon().wait(lock.buffer, lock.index * 4, marked, -1);
}
