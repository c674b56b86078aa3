/**
 * TypeScript modules for `import` and `require()` through Node's in-thread module hooks (`module.registerHooks`,
 * Node 22.15 and later): no loader thread, no compiler in the process (compile.ts serves each module's
 * JavaScript from a cache shared by content), and the resolution TypeScript projects rely on:
 * - `./x.js` names `./x.ts` when only the TypeScript file exists (and `.mjs`/`.cjs` name `.mts`/`.cts`);
 * - `./x` and `./dir` name `./x.ts` and `./dir/index.ts`;
 * - the `paths` of the nearest tsconfig.json map bare names (read only when Node itself cannot resolve one).
 * A `.ts` file runs as ESM or CommonJS by Node's own rule (extension, then the nearest package.json's `type`).
 */
import { readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import * as nodeModule from "node:module";
import { dirname, extname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { moduleFormat } from "./format.js";
import { compileTypeScript } from "./compile.js";

interface ResolveContext {
  readonly parentURL?: string | undefined;
  readonly conditions?: readonly string[];
  readonly importAttributes?: Record<string, string>;
}
interface ResolveResult {
  readonly url: string;
  readonly format?: string | null | undefined;
  readonly shortCircuit?: boolean;
}
interface LoadContext {
  readonly format?: string | null | undefined;
  readonly conditions?: readonly string[];
  readonly importAttributes?: Record<string, string>;
}
interface LoadResult {
  readonly format: string | null | undefined;
  readonly source?: string | ArrayBuffer | Uint8Array | null | undefined;
  readonly shortCircuit?: boolean;
}
interface SyncHooks {
  resolve(specifier: string, context: ResolveContext, next: (specifier: string, context?: ResolveContext) => ResolveResult): ResolveResult;
  load(url: string, context: LoadContext, next: (url: string, context?: LoadContext) => LoadResult): LoadResult;
}
type RegisterHooks = (hooks: SyncHooks) => unknown;

const TYPESCRIPT = /\.(?:[cm]?ts|tsx)$/;
/** A JavaScript extension that may stand for the TypeScript file beside it, as TypeScript's own resolution allows. */
const STANDS_FOR: Record<string, readonly string[]> = { ".js": [".ts", ".tsx"], ".mjs": [".mts"], ".cjs": [".cts"], ".jsx": [".tsx"] };
const EXTENSIONLESS = [".ts", ".tsx", ".mts", ".cts", "/index.ts", "/index.tsx"];

/** Whether this Node line has in-thread module hooks (22.15+). */
export function inThreadHooksAvailable(): boolean {
  return typeof (nodeModule as { registerHooks?: unknown }).registerHooks === "function";
}

function isNotFound(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === "ERR_MODULE_NOT_FOUND" || code === "MODULE_NOT_FOUND" || code === "ERR_UNSUPPORTED_DIR_IMPORT";
}

function exists(url: URL): boolean {
  try {
    return statSync(url).isFile();
  } catch {
    return false;
  }
}

/** The TypeScript file a relative or absolute specifier that Node could not resolve stands for, if any. */
function typescriptCandidate(specifier: string, parentURL: string | undefined): string | undefined {
  if (parentURL === undefined || !parentURL.startsWith("file:")) return undefined;
  if (!(specifier.startsWith("./") || specifier.startsWith("../") || specifier.startsWith("/") || specifier.startsWith("file:"))) return undefined;
  const base = new URL(specifier, parentURL);
  const ext = extname(base.pathname);
  const stem = base.href.slice(0, base.href.length - ext.length);
  const tries = STANDS_FOR[ext]?.map((replacement) => stem + replacement) ?? EXTENSIONLESS.map((suffix) => base.href.replace(/\/$/, "") + suffix);
  return tries.find((candidate) => exists(new URL(candidate)));
}

/** The files a bare name maps to by the `paths` of the tsconfig.json nearest the importing file. */
function pathsCandidates(specifier: string, parentURL: string | undefined): string[] {
  if (parentURL === undefined || !parentURL.startsWith("file:")) return [];
  try {
    const { getTsconfig, createPathsMatcher } = createRequire(import.meta.url)("get-tsconfig") as typeof import("get-tsconfig");
    const config = getTsconfig(dirname(fileURLToPath(parentURL)));
    const matcher = config === null ? null : createPathsMatcher(config);
    return matcher === null ? [] : matcher(specifier);
  } catch {
    return [];
  }
}

/**
 * `PACKAGE_FROM` + the parent's URL (encoded) + `:` + a package name: that package as `import()` resolves it
 * from the parent (a package name given as a worker library resolves from the postmaster's working directory,
 * not from this package's location).
 */
export const PACKAGE_FROM = "bgworker-package-from:";

function resolve(specifier: string, context: ResolveContext, next: (specifier: string, context?: ResolveContext) => ResolveResult): ResolveResult {
  if (specifier.startsWith(PACKAGE_FROM)) {
    const rest = specifier.slice(PACKAGE_FROM.length);
    const colon = rest.indexOf(":");
    return resolve(rest.slice(colon + 1), { ...context, parentURL: decodeURIComponent(rest.slice(0, colon)) }, next);
  }
  try {
    return next(specifier, context);
  } catch (error) {
    if (!isNotFound(error)) throw error;
    const candidate = typescriptCandidate(specifier, context.parentURL);
    // The file is known: both module systems take its URL as the resolution.
    if (candidate !== undefined) return { url: candidate, shortCircuit: true };
    for (const path of pathsCandidates(specifier, context.parentURL)) {
      const url = pathToFileURL(path).href;
      const found = exists(new URL(url)) ? url : typescriptCandidate(url, context.parentURL);
      if (found !== undefined) return { url: found, shortCircuit: true };
    }
    throw error;
  }
}

function load(url: string, context: LoadContext, next: (url: string, context?: LoadContext) => LoadResult): LoadResult {
  if (!url.startsWith("file:") || !TYPESCRIPT.test(new URL(url).pathname)) return next(url, context);
  const path = fileURLToPath(url);
  const format = moduleFormat(path);
  const source = compileTypeScript(path, readFileSync(path, "utf8"), format);
  return { format, source, shortCircuit: true };
}

let installed = false;

/**
 * Installs the hooks in this process, once; returns false on a Node line without in-thread hooks (the caller
 * then uses the threaded loader). Source maps are turned on so that stack traces name `.ts` lines.
 */
export function installTypeScriptHooks(): boolean {
  if (installed) return true;
  const register = (nodeModule as { registerHooks?: RegisterHooks }).registerHooks;
  if (register === undefined) return false;
  register({ resolve, load });
  process.setSourceMapsEnabled(true);
  installed = true;
  return true;
}

