/**
 * What a spare runner pays for while it waits, so that becoming a worker costs a message and a function call:
 * the TypeScript loader warmed by a real transform, this package, the orphan watchdog (started by the
 * bootstrap), the postmaster's shared memory segment, and the worker libraries the postmaster knows of.
 *
 * Preloading a library runs its top-level code in the spare, before the process knows which worker it will
 * become: PostgreSQL's `shared_preload_libraries`, where a library's `_PG_init` runs in the postmaster and
 * every backend inherits it. Per-worker state (name, argument, signals, latch, database session) is set
 * before the worker's function is called, never at import. A library whose preload fails is reported and
 * this spare retires, so that the library is imported at launch by a spare that never evaluated it.
 */
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import type { ConnectionParams } from "../database/types.js";
import { importFrom, modulePath, typeScriptSupport } from "../modules.js";
import { FROM_SOURCE, packageRoot } from "../package-paths.js";
import { attachShmem } from "../shmem/index.js";
import type { ShmemAttachment } from "../shmem/types.js";
import type { FromRunner } from "./ipc.js";

/** What the postmaster tells its spares to prepare; sent at boot and again when any of it changes. */
export interface PrepareMessage {
  readonly t: "prepare";
  /** The working directory libraries resolve from. */
  readonly cwd: string;
  /** Libraries of every static worker and of every worker launched so far, as given to `setLibrary`. */
  readonly libraries: readonly string[];
  /** The segment, when an extension requested shared memory. */
  readonly shmem: ShmemAttachment | null;
  /** The served database while it accepts connections and SPI workers have been seen; null otherwise. */
  readonly database: ConnectionParams | null;
}

type Library = Record<string, unknown>;

let entryLoaded: Promise<void> | undefined;

/**
 * This package's entry point, imported once per runner, ahead of any library: worker libraries import
 * "bgworker", whose entry loads what a worker uses. A library waits for it. On Node 20, a CommonJS library's
 * `require("bgworker")` of an entry whose `import()` is still in progress fails ("not yet fully loaded"),
 * where an ES module library would simply wait for the same import. Imported on the runner's first call, not
 * at this module's evaluation: the module is part of the package's core, which every process loads.
 */
export function packageLoaded(): Promise<void> {
  entryLoaded ??= import("../index.js").then(
    () => undefined,
    () => undefined,
  );
  return entryLoaded;
}

const libraries = new Map<string, Promise<Library>>();
/** Libraries whose preload failed in this process: a launch imports them afresh (see `library`). */
const failedPreloads = new Set<string>();

function keyOf(specifier: string, cwd: string): string {
  return modulePath(specifier, cwd) ?? `${cwd}\0${specifier}`;
}

function load(specifier: string, cwd: string, key: string): Promise<Library> {
  const loading = packageLoaded().then(() => importFrom(specifier, cwd));
  // A failed preload is reported by prepare(); the launch that awaits it reports it again.
  loading.catch(() => undefined);
  libraries.set(key, loading);
  return loading;
}

/**
 * The library's module: imported once per process, whether by a preload or by the launch itself. A
 * library whose preload failed here (its top-level code may need the worker's role) is evaluated again
 * for the launch, as a new module instance of the same file, now that the role is set.
 */
export async function library(specifier: string, cwd: string): Promise<Library> {
  const key = keyOf(specifier, cwd);
  const pending = libraries.get(key);
  if (pending !== undefined && !failedPreloads.has(key)) {
    try {
      return await pending;
    } catch (error) {
      // A preload that failed while this launch waited for it is retried below; any other failure is the launch's.
      if (!failedPreloads.has(key)) throw error;
    }
  }
  const path = modulePath(specifier, cwd);
  if (failedPreloads.has(key) && path !== undefined) {
    return importFrom(specifier, cwd, { fresh: true });
  }
  return load(specifier, cwd, key);
}

/** Resolves once every library imported or being imported so far has loaded or failed. */
export async function librariesSettled(): Promise<void> {
  await Promise.allSettled([...libraries.values()]);
}

/**
 * Applies a preparation: attaches the segment, opens a database session ahead of time, and imports
 * libraries not imported yet. `send` reports a library that failed, after which this spare is retired.
 */
export function prepare(message: PrepareMessage, send: (message: FromRunner) => void): void {
  if (message.shmem !== null) {
    try {
      attachShmem(message.shmem);
    } catch {
      // The launch attaches again and reports the failure to the worker that needs the segment.
    }
  }
  // The database driver is loaded only by a spare that may become an SPI worker: the postmaster sends a
  // database only once SPI workers have been seen.
  if (message.database !== null) preopenFor(message.database);
  for (const specifier of message.libraries) {
    if (libraries.has(keyOf(specifier, message.cwd))) continue;
    const key = keyOf(specifier, message.cwd);
    load(specifier, message.cwd, key).catch((error: unknown) => {
      failedPreloads.add(key);
      const text = error instanceof Error ? error.message : String(error);
      send({ t: "log", level: "LOG", message: `library "${specifier}" could not be preloaded; it will be imported at launch`, detail: text });
      send({ t: "preloadFailed", library: specifier });
    });
  }
}

let preopening: Promise<typeof import("./spi-preopen.js")> | undefined;

function preopenFor(database: ConnectionParams): void {
  preopening ??= import("./spi-preopen.js");
  // The session's parsers are the SPI session's, which need the driver loaded.
  const spi = import("./spi.js").then(async (module) => (await module.ensureDriver(), module));
  void Promise.all([preopening, spi])
    .then(([preopen, { sessionTypes }]) => preopen.preopenSession(database, sessionTypes))
    .catch(() => undefined);
}

/**
 * This process has become a worker: hands the session opened ahead of time (if any) to an SPI worker of type
 * `spiType`, or closes it when the worker does not use SPI (`spiType` null). Resolves once that is decided.
 */
export async function dedicatePreopened(spiType: string | null): Promise<void> {
  if (preopening === undefined) return;
  (await preopening).dedicatePreopenedSession(spiType);
}

/**
 * Runs the TypeScript loader's path once (its resolve and load hooks on their own thread, a TypeScript file
 * read and evaluated), so that the first library a launch imports does not pay for the loader's first use.
 * The file is the declaration file that the build writes beside this module: TypeScript that is always
 * shipped and evaluates to nothing. Its transform comes from the loader's disk cache, so esbuild's service
 * (a thread and a process, kept for the life of the worker) is not started here: a `.ts` library never
 * transformed on this machine starts it at its first launch, once per process. From source the runner's own
 * `.ts` modules have warmed the loader already.
 */
export async function warmLoader(): Promise<void> {
  // The in-thread hooks have nothing to warm: a cached module costs a file read.
  if (FROM_SOURCE || typeScriptSupport() !== "tsx") return;
  try {
    await import(pathToFileURL(join(packageRoot(), "dist", "runtime", "loader-warmup.d.ts")).href);
  } catch {
    // Only a missed warm-up: the first TypeScript import pays for the loader instead.
  }
}
