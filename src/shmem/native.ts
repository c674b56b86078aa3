/**
 * The native addon (native/shm.cc), loaded on first use so that a process that never touches shared
 * memory does not need it built.
 */
import { createRequire } from "node:module";

/** What `wait` reports, as `Atomics.wait`. */
export type WaitResult = "ok" | "not-equal" | "timed-out";

/** The addon's functions. Every failing syscall throws an Error with Node's `code`/`errno`/`syscall`. */
export interface ShmAddon {
  /** A new zero-filled segment (O_CREAT|O_EXCL, mode 0600), mapped whole. */
  create(name: string, size: number): SharedArrayBuffer;
  /** An existing segment, mapped whole. */
  open(name: string): SharedArrayBuffer;
  /** Removes the segment's name; false if there was none. Mappings stay valid until unmapped. */
  unlink(name: string): boolean;
  /** Detaches the buffer from the segment (its pages become private zeros); false if already detached. */
  unmap(buffer: SharedArrayBuffer): boolean;
  /** Sleeps while the 32-bit word at `byteIndex` equals `expected`, across processes. Negative timeout: forever. */
  wait(buffer: SharedArrayBuffer, byteIndex: number, expected: number, timeoutMs: number): WaitResult;
  /** Wakes up to `count` (Infinity: all) waiters on the word; returns how many were woken. */
  wake(buffer: SharedArrayBuffer, byteIndex: number, count: number): number;
}

// The same relative path works from src/shmem/ (tsx) and dist/shmem/ (built): both are two levels below the root.
const ADDON_PATH = "../../build/Release/bgworker_shm.node";

let addon: ShmAddon | undefined;

export function shmAddon(): ShmAddon {
  if (addon === undefined) {
    try {
      addon = createRequire(import.meta.url)(ADDON_PATH) as ShmAddon;
    } catch (error) {
      const reason = error instanceof Error ? error.message.split("\n")[0] : String(error);
      throw new Error(
        `shared memory needs the native addon bgworker_shm, which could not be loaded (${reason}): ` +
          `build it with "npm rebuild bgworker" (node-gyp and a C++ compiler are required)`,
      );
    }
  }
  return addon;
}
