/**
 * The native addon (native/shm.cc), loaded on first use so that a process that never touches shared
 * memory does not need it built. `node-gyp-build` finds it: a local build (`build/Release`) first, else the
 * prebuilt binary shipped in `prebuilds/<platform>-<arch>/` for this Node ABI and libc. A local build made by
 * another Node (a checkout built under Node 20 and run under Node 26) does not load in this one: the prebuilt
 * binary for this Node then serves, when there is one. The binary is chosen by the ABI node-gyp wrote in
 * `build/config.gypi` and the prebuilt binaries' names, without a dlopen that would fail: every worker loads
 * the addon as it boots (its orphan guard), and a failed load cost each one about 6 ms of CPU. A binary so
 * chosen is loaded with `process.dlopen()` itself, not through `require()` (see `loadBinary`).
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { makeError } from "../errors.js";
import { packageRoot } from "../package-paths.js";

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
  /**
   * `prctl(PR_SET_PDEATHSIG, signal)`: the kernel sends `signal` (a number, 1 to 64; 0 clears it) to this
   * process when the thread that forked it exits. Linux only, as the whole addon. Throws a RangeError for a
   * number out of range, an Error with Node's `code` if prctl fails.
   */
  setParentDeathSignal(signal: number): void;
  /**
   * The kernel kills this process with SIGKILL `graceMs` (1 to 60,000) after its parent dies: a real-time
   * parent-death signal whose handler arms a SIGKILL timer (native/orphan.cc). True once armed.
   */
  armOrphanKill(graceMs: number): boolean;
  /** pipe2(O_CLOEXEC): [read end, write end]. Absent from an addon built before it was added, as are the three below. */
  pipe?(): [number, number];
  /** socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC): two connected ends. */
  socketPair?(): [number, number];
  /** fcntl(F_DUPFD_CLOEXEC): a second descriptor for the same open file or socket. */
  duplicate?(fd: number): number;
  /**
   * posix_spawn(3) of `file` (native/spawn.cc): the child's descriptor i is `fds[i]` of this process (-1:
   * /dev/null), every signal at its default action and none blocked, in a new session if `newSession`.
   * Returns its pid; throws an Error with Node's `code` if the spawn fails.
   */
  spawn?(file: string, argv: readonly string[], env: readonly string[], fds: readonly number[], newSession: boolean): number;
  /** waitid(P_PID, pid, WEXITED | WNOHANG): undefined while the child runs, else its [code, null] or [null, signal number]. */
  reap?(pid: number): [number, null] | [null, number] | undefined;
}


let addon: ShmAddon | undefined;

/**
 * The addon binary at `path`, loaded as `require()` loads one (`process.dlopen()`, which is what it calls),
 * without the CommonJS loader's resolution and module cache around it, whose first use in a process costs a
 * runner's boot about 1 ms on Node 26 where the load itself costs 0.2. Nothing is lost with them: the path is
 * one that exists (addonPath), and dlopen's own errors are require()'s. The addon is context-aware
 * (NODE_MODULE_INIT), so a second copy of this package in the same process may load it again: it gets
 * functions of its own over the one process-wide state (the mapped segments, the orphan timer).
 */
function loadBinary(path: string): ShmAddon {
  const module = { exports: {} };
  process.dlopen(module, path);
  return module.exports as ShmAddon;
}

export function shmAddon(): ShmAddon {
  if (addon === undefined) {
    const root = packageRoot();
    try {
      const path = addonPath(root);
      if (path !== undefined) {
        addon = loadBinary(path);
      } else {
        const load = createRequire(import.meta.url)("node-gyp-build") as (dir: string) => unknown;
        try {
          addon = load(root) as ShmAddon;
        } catch (error) {
          // build/Release made by another Node's install: this Node's prebuilt binary, if the package has one.
          const prebuilt = /NODE_MODULE_VERSION|undefined symbol/.test(String(error)) ? prebuiltFor(root) : undefined;
          if (prebuilt === undefined) throw error;
          addon = loadBinary(prebuilt);
        }
      }
    } catch (error) {
      throw makeError(Error, "ERR_BGWORKER_SHMEM_ADDON", addonMissingMessage(error));
    }
  }
  return addon;
}

/** The addon if it loads here, else undefined (no error): for callers that can do without it. */
export function shmAddonIfAvailable(): ShmAddon | undefined {
  try {
    return shmAddon();
  } catch {
    return undefined;
  }
}

/** The local build's file, as binding.gyp names its target. */
const LOCAL_BUILD = join("build", "Release", "bgworker_shm.node");

/**
 * The binary to load, in node-gyp-build's order: the package's local build when node-gyp made it for this
 * Node's ABI (`build/config.gypi` says which), else the prebuilt one for this ABI. Undefined when neither
 * is known to fit: node-gyp-build then tries what there is, and says what is missing.
 */
export function addonPath(root: string, versions: NodeJS.ProcessVersions = process.versions): string | undefined {
  const local = join(root, LOCAL_BUILD);
  const abi = localBuildAbi(root);
  if (abi === versions.modules && existsSync(local)) return local;
  if (abi === undefined && existsSync(local)) return undefined;
  return prebuiltFor(root, versions);
}

/** The Node ABI (`process.versions.modules`) of the package's local build, from node-gyp's `build/config.gypi`. */
export function localBuildAbi(root: string): string | undefined {
  let config: string;
  try {
    config = readFileSync(join(root, "build", "config.gypi"), "utf8");
  } catch {
    return undefined;
  }
  return /"node_module_version":\s*(\d+)/.exec(config)?.[1];
}

/**
 * The C library prebuilt binaries are chosen for, by node-gyp-build's own rule (the `LIBC` variable, else
 * musl on Alpine): the binaries are named by that rule, and it costs one stat where asking glibc's version
 * of `process.report` costs milliseconds.
 */
function libcOf(platform: string): "glibc" | "musl" {
  const given = process.env.LIBC;
  if (given === "glibc" || given === "musl") return given;
  return platform.startsWith("linux-") && existsSync("/etc/alpine-release") ? "musl" : "glibc";
}

/**
 * The prebuilt binary in `<root>/prebuilds/<platform>-<arch>/` for this Node's ABI and C library, named as
 * node-gyp-build names them (`bgworker.abi147.glibc.node`), or undefined.
 */
export function prebuiltFor(root: string, versions: NodeJS.ProcessVersions = process.versions, platform = `${process.platform}-${process.arch}`): string | undefined {
  const dir = join(root, "prebuilds", platform);
  let files: string[];
  try {
    files = readdirSync(dir);
  } catch {
    return undefined;
  }
  const libc = libcOf(platform);
  const file = files.find((name) => {
    const tags = name.split(".");
    return tags.at(-1) === "node" && tags.includes(`abi${versions.modules}`) && !tags.includes("napi") && !tags.includes(libc === "glibc" ? "musl" : "glibc");
  });
  return file === undefined ? undefined : join(dir, file);
}

/** One line: what is missing (no prebuilt binary for this platform and Node, no local build) and how to get it. */
export function addonMissingMessage(error: unknown, platform = `${process.platform}-${process.arch}`, node = process.versions): string {
  const reason = error instanceof Error ? (error.message.split("\n")[0] ?? "") : String(error);
  return (
    `shared memory needs bgworker's native addon, which is not available (${reason.trim()}): bgworker ships ` +
    `prebuilt ones for linux-x64 with glibc and Node ${PREBUILT_NODE_LINES.join(", ").replace(/, (\d+)$/, " and $1")}, not for ${platform} Node ${node.node} (ABI ${node.modules}); ` +
    `build it with a C++ compiler, make and python3 (apt-get install g++ make python3) and "npm rebuild bgworker"`
  );
}

/** The Node majors whose ABIs the shipped prebuilt binaries target (scripts/node-lines.cjs's SUPPORTED_LINES). */
export const PREBUILT_NODE_LINES: readonly number[] = [20, 22, 24, 26];
