/**
 * What the TypeScript module hooks of every Node line share (hooks.ts in-thread, loader-thread.ts on a loader
 * thread, require-hooks.ts for `require()` where Node has no in-thread hooks): the resolution TypeScript
 * projects rely on, and a `.ts` module's compiled source.
 * - `./x.js` names `./x.ts` when only the TypeScript file exists (and `.mjs`/`.cjs` name `.mts`/`.cts`);
 * - `./x` and `./dir` name `./x.ts` and `./dir/index.ts`;
 * - the `paths` of the nearest tsconfig.json map bare names (read only when Node itself cannot resolve one).
 * A `.ts` file runs as ESM or CommonJS by Node's own rule (extension, then the nearest package.json's `type`).
 */
import { readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, extname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { compileModule } from "./compile.js";
import { moduleFormat } from "./format.js";

export interface ResolveContext {
  readonly parentURL?: string | undefined;
  readonly conditions?: readonly string[];
  readonly importAttributes?: Record<string, string>;
}
export interface ResolveResult {
  readonly url: string;
  readonly format?: string | null | undefined;
  readonly shortCircuit?: boolean;
}
export interface LoadContext {
  readonly format?: string | null | undefined;
  readonly conditions?: readonly string[];
  readonly importAttributes?: Record<string, string>;
}
export interface LoadResult {
  readonly format: string | null | undefined;
  readonly source?: string | ArrayBuffer | Uint8Array | null | undefined;
  readonly shortCircuit?: boolean;
}
export const TYPESCRIPT = /\.(?:[cm]?ts|tsx)$/;
/** A JavaScript extension that may stand for the TypeScript file beside it, as TypeScript's own resolution allows. */
const STANDS_FOR: Record<string, readonly string[]> = { ".js": [".ts", ".tsx"], ".mjs": [".mts"], ".cjs": [".cts"], ".jsx": [".tsx"] };
const EXTENSIONLESS = [".ts", ".tsx", ".mts", ".cts", "/index.ts", "/index.tsx"];

export function isNotFound(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === "ERR_MODULE_NOT_FOUND" || code === "MODULE_NOT_FOUND" || code === "ERR_UNSUPPORTED_DIR_IMPORT";
}

export function exists(url: URL): boolean {
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

/**
 * The file a specifier that Node could not resolve stands for, by TypeScript's resolution: a `.ts` file for a
 * relative or absolute specifier, or a file the tsconfig.json `paths` map a bare name to. Undefined if none.
 */
export function typescriptFileFor(specifier: string, parentURL: string | undefined): string | undefined {
  const candidate = typescriptCandidate(specifier, parentURL);
  if (candidate !== undefined) return candidate;
  for (const path of pathsCandidates(specifier, parentURL)) {
    const url = pathToFileURL(path).href;
    const found = exists(new URL(url)) ? url : typescriptCandidate(url, parentURL);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** A `PACKAGE_FROM` specifier taken apart: the package name and the parent to resolve it from; else undefined. */
export function packageFrom(specifier: string): { specifier: string; parentURL: string } | undefined {
  if (!specifier.startsWith(PACKAGE_FROM)) return undefined;
  const rest = specifier.slice(PACKAGE_FROM.length);
  const colon = rest.indexOf(":");
  return { specifier: rest.slice(colon + 1), parentURL: decodeURIComponent(rest.slice(0, colon)) };
}

/** A TypeScript module's format and compiled source, or undefined for any other URL. */
export function compiledModule(url: string): { format: "module" | "commonjs"; source: string } | undefined {
  if (!url.startsWith("file:") || !TYPESCRIPT.test(new URL(url).pathname)) return undefined;
  const path = fileURLToPath(url);
  const format = moduleFormat(path);
  return { format, source: compileModule(path, readFileSync(path, "utf8"), format) };
}
