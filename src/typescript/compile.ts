/**
 * TypeScript compiled once per content, not once per process: a `.ts` module's JavaScript is kept on disk,
 * keyed by the compiler and its target, the file's path, its module format, the nearest tsconfig.json and the
 * source itself (compared whole on every read).
 * A worker that finds its module there reads one file and loads no compiler at all; only the first process to
 * meet a new source (usually the postmaster loading the extension, or the first spare preloading a library)
 * runs esbuild, as a short-lived child process, and writes the result for every later one.
 *
 * Why esbuild and not Node's own type stripping (`module.stripTypeScriptTypes`), measured on Node 24 and 26:
 * the stripper is a WebAssembly build of SWC that costs every process that uses it about 19 MB of RSS and
 * 90-210 ms on its first call, which is more than a whole bare worker; Node 26 strips only (no `enum`,
 * `namespace` or parameter properties); and stripping keeps an import of a name that is only a type, which
 * fails at link time where TypeScript (and esbuild) drop it. One compiler on every Node line keeps the
 * semantics users had, and the cache makes its cost nil after the first process.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { basename, dirname, extname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The module system a compiled file runs under; CommonJS output turns `import`/`export` into require/exports. */
export type CompiledFormat = "module" | "commonjs";

/** This module's require(), made on first use: at import it would cost every process a module record. */
let requireHere: NodeJS.Require | undefined;
function localRequire(): NodeJS.Require {
  requireHere ??= createRequire(import.meta.url);
  return requireHere;
}
function require(id: string): unknown {
  return localRequire()(id);
}

interface Esbuild {
  readonly version: string;
  transformSync(input: string, options: Record<string, unknown>): { code: string };
  build(options: import("esbuild").BuildOptions & { write: false }): Promise<import("esbuild").BuildResult & { outputFiles: import("esbuild").OutputFile[] }>;
  stop(): Promise<void> | void;
}

let esbuild: Esbuild | undefined;

export function compiler(): Esbuild {
  // Without this, esbuild's synchronous API keeps a worker thread alive for the rest of the process; a cache
  // miss is rare enough to pay for a short child process instead.
  process.env["ESBUILD_WORKER_THREADS"] = "0";
  esbuild ??= require("esbuild") as Esbuild;
  return esbuild;
}

/**
 * esbuild's package.json where `require.resolve("esbuild/package.json")` finds it, by the same walk: from this
 * module's directory up, `node_modules/esbuild` in each directory not itself named node_modules: the
 * CommonJS resolver's first use in a runner (see shmem/native.ts's `loadBinary`) would cost it more than the
 * walk's few file checks. Where the walk finds none (Yarn Plug'n'Play, NODE_PATH, a global folder), the
 * resolver answers. The path is as the walk found it, not the real one: only the version in it is read.
 */
export function esbuildManifest(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    if (basename(dir) !== "node_modules") {
      const candidate = join(dir, "node_modules", "esbuild", "package.json");
      if (existsSync(candidate)) return candidate;
    }
    if (dirname(dir) === dir) return localRequire().resolve("esbuild/package.json");
  }
}

/** esbuild's version without loading it: part of every cache key, so a new compiler never reads old output. */
function compilerVersion(): string {
  try {
    return (JSON.parse(readFileSync(esbuildManifest(), "utf8")) as { version: string }).version;
  } catch {
    return "unknown";
  }
}

let compilerId: string | undefined;

/** esbuild's version in every key (read on first use: resolving it costs every process that imports the package). */
function compilerIdentity(): string {
  compilerId ??= `esbuild@${compilerVersion()}/2`;
  return compilerId;
}

/** The tsconfig.json nearest above each directory (its text), or null: found by walking up once per directory. */
const tsconfigs = new Map<string, string | null>();

export function nearestTsconfig(dir: string): string | null {
  const known = tsconfigs.get(dir);
  if (known !== undefined) return known;
  let found: string | null;
  try {
    found = readFileSync(join(dir, "tsconfig.json"), "utf8");
  } catch {
    const parent = dirname(dir);
    found = parent === dir ? null : nearestTsconfig(parent);
  }
  tsconfigs.set(dir, found);
  return found;
}

/** The compiler options esbuild honours from the project's tsconfig (decorators, class fields, JSX). */
function tsconfigRaw(path: string): Record<string, unknown> | undefined {
  const text = nearestTsconfig(dirname(path));
  if (text === null) return undefined;
  try {
    // tsconfig.json allows comments and trailing commas; get-tsconfig reads it as TypeScript does, `extends` included.
    const { getTsconfig } = require("get-tsconfig") as typeof import("get-tsconfig");
    const config = getTsconfig(dirname(path));
    return config === null ? undefined : { compilerOptions: config.config.compilerOptions ?? {} };
  } catch {
    return undefined;
  }
}

let cacheDir: string | null | undefined;

/**
 * The cache directory, created owner-only; null (no cache, compile in memory) when it cannot be made or is not
 * this user's alone, since another user's directory could hand this process code to run.
 */
export function cache(): string | null {
  if (cacheDir !== undefined) return cacheDir;
  const uid = process.getuid?.() ?? 0;
  const dir = process.env["BGWORKER_CACHE_DIR"] ?? join(tmpdir(), `bgworker-${uid}`, "typescript");
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const stats = statSync(dir);
    const parentStats = statSync(dirname(dir));
    const ownedAlone = (s: { uid: number; mode: number }): boolean => s.uid === uid && (s.mode & 0o022) === 0;
    cacheDir = ownedAlone(stats) && (process.env["BGWORKER_CACHE_DIR"] !== undefined || ownedAlone(parentStats)) ? dir : null;
  } catch {
    cacheDir = null;
  }
  return cacheDir;
}

/** esbuild's loader for each extension; JavaScript is compiled too when it must become CommonJS. */
const LOADERS: Record<string, string> = { ".ts": "ts", ".mts": "ts", ".cts": "ts", ".tsx": "tsx", ".js": "js", ".mjs": "js", ".cjs": "js", ".jsx": "jsx" };

/** What `import.meta` stands for in ES module code compiled to CommonJS. */
const IMPORT_META_IN_COMMONJS = { "import.meta.url": "__bgworker_import_meta_url", "import.meta.filename": "__filename", "import.meta.dirname": "__dirname" };
const IMPORT_META_BANNER = 'var __bgworker_import_meta_url = require("node:url").pathToFileURL(__filename).href;';

/**
 * A 53-bit hash of `text` (two multiplicative 32-bit lanes), to name cache files. It only spreads names: each
 * entry holds its full key and source, compared on read, so two texts that share a name can never be
 * confused. (A cryptographic hash would load OpenSSL into every worker: about 2 MB of memory each.)
 */
export function spread(text: string): string {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(16);
}

/** What a cache file holds: the compiled code, with the key and source it was compiled from. */
interface Entry {
  readonly key: string;
  readonly source: string;
  readonly code: string;
}

/** The Node line compiled for: its own syntax is left as written. */
export const TARGET = `node${process.versions.node.split(".")[0]}`;

/** What a module's JavaScript depends on besides its source: the compiler, the target, the path, the format, tsconfig.json. */
export function compileKey(path: string, format: CompiledFormat): string {
  return `${compilerIdentity()}\0${TARGET}\0${path}\0${format}\0${nearestTsconfig(dirname(path)) ?? ""}`;
}

/**
 * The JavaScript of the module at `path` (TypeScript, or an ES module that must run as CommonJS), with an inline source map so that stack traces name its
 * `.ts` lines. Read from the cache when this exact source was compiled before; compiled and stored otherwise.
 * A syntax error is thrown as esbuild reports it: the file, line and column, and the offending text.
 */
export function compileModule(path: string, source: string, format: CompiledFormat): string {
  const key = compileKey(path, format);
  const dir = cache();
  const file = dir === null ? null : join(dir, `${spread(key)}-${spread(source)}.json`);
  if (file !== null) {
    try {
      const entry = JSON.parse(readFileSync(file, "utf8")) as Entry;
      if (entry.key === key && entry.source === source) return entry.code;
    } catch {
      // Not compiled yet (or a damaged entry, compiled again below).
    }
  }
  const raw = tsconfigRaw(path);
  const { code } = compiler().transformSync(source, {
    loader: LOADERS[extname(path)] ?? "ts",
    format: format === "commonjs" ? "cjs" : "esm",
    // ES module code compiled to CommonJS keeps its own URL (esbuild would leave `import.meta` empty).
    ...(format === "commonjs" ? { define: IMPORT_META_IN_COMMONJS, banner: IMPORT_META_BANNER } : {}),
    sourcefile: path,
    sourcemap: "inline",
    target: TARGET,
    ...(raw === undefined ? {} : { tsconfigRaw: raw }),
  });
  if (file !== null) {
    // Written whole under a temporary name, then renamed: a reader sees no file or the complete one.
    const temporary = `${file}.${process.pid}.tmp`;
    try {
      writeFileSync(temporary, JSON.stringify({ key, source, code } satisfies Entry), { mode: 0o600 });
      renameSync(temporary, file);
    } catch {
      // A full disk or a removed directory costs only the next process a compile.
    }
  }
  return code;
}
