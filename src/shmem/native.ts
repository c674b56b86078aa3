/**
 * The native addon (native/shm.cc), loaded on first use so that a process that never touches shared
 * memory does not need it built. `node-gyp-build` finds it: a local build (`build/Release`) first, else the
 * prebuilt binary shipped in `prebuilds/<platform>-<arch>/` for this Node ABI and libc.
 */
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { makeError } from "../errors.js";

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
const PACKAGE_ROOT = fileURLToPath(new URL("../../", import.meta.url));

let addon: ShmAddon | undefined;

export function shmAddon(): ShmAddon {
  if (addon === undefined) {
    const require = createRequire(import.meta.url);
    try {
      const load = require("node-gyp-build") as (dir: string) => unknown;
      addon = load(PACKAGE_ROOT) as ShmAddon;
    } catch (error) {
      throw makeError(Error, "ERR_BGWORKER_SHMEM_ADDON", addonMissingMessage(error));
    }
  }
  return addon;
}

/** One line: what is missing (no prebuilt binary for this platform and Node, no local build) and how to get it. */
export function addonMissingMessage(error: unknown, platform = `${process.platform}-${process.arch}`, node = process.versions): string {
  const reason = error instanceof Error ? (error.message.split("\n")[0] ?? "") : String(error);
  return (
    `shared memory needs bgworker's native addon, which is not available (${reason.trim()}): bgworker ships a ` +
    `prebuilt one for linux-x64 with glibc and Node ${PREBUILT_NODE_MAJOR}, not for ${platform} Node ${node.node} (ABI ${node.modules}); ` +
    `build it with a C++ compiler, make and python3 (apt-get install g++ make python3) and "npm rebuild bgworker"`
  );
}

/** The Node major version whose ABI the shipped prebuilt binary targets. */
export const PREBUILT_NODE_MAJOR = 20;
