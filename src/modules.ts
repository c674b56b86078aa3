/**
 * Loading user modules (extensions in the postmaster, worker libraries in workers) the way `import()`
 * would from the postmaster's working directory, TypeScript included.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { moduleFormat } from "./typescript/format.js";
import * as nodeModule from "node:module";
import { installTypeScriptHooks, PACKAGE_FROM } from "./typescript/hooks.js";
import { installRequireHooks } from "./typescript/require-hooks.js";
import { entryPath } from "./package-paths.js";
import { directModule, plainJavaScript } from "./typescript/direct.js";
import { TYPESCRIPT } from "./typescript/resolution.js";

export { moduleFormat } from "./typescript/format.js";

/**
 * How this process loads TypeScript: the in-thread hooks (typescript/hooks.ts), the project's hooks on Node's
 * loader thread with `require()` hooks in the main thread (Node lines without in-thread hooks), or tsx (a
 * process started with it, or a Node 20 before 20.6, which has no `module.register`).
 */
type TypeScriptSupport = "hooks" | "thread" | "tsx";

const TS_LOADER = Symbol.for("bgworker.typescript-loader");
type ProcessGlobals = { [TS_LOADER]?: TypeScriptSupport };

/** A process started with tsx (`node --import tsx`, the test suite from source) keeps tsx's loader for everything. */
function startedUnderTsx(): boolean {
  return [...process.execArgv, process.env["NODE_OPTIONS"] ?? ""].some((arg) => /\btsx\b/.test(arg));
}

/** How this process loads TypeScript, once `ensureTypeScript()` has run. */
export function typeScriptSupport(): TypeScriptSupport | undefined {
  return (globalThis as ProcessGlobals)[TS_LOADER];
}

/**
 * Makes `.ts` modules importable in this process, once: the project's hooks serve compiled modules from a
 * cache shared by content, in-thread where Node has `module.registerHooks` (22.15+), else on Node's loader
 * thread (`module.register`) with `require()` hooks in the main thread. A process started with tsx's loader
 * (`node --import tsx`, the test suite running from source) keeps it.
 */
export async function ensureTypeScript(): Promise<void> {
  const globals = globalThis as ProcessGlobals;
  if (globals[TS_LOADER] !== undefined) return;
  const underTsx = startedUnderTsx();
  if (!underTsx && installTypeScriptHooks()) {
    globals[TS_LOADER] = "hooks";
    return;
  }
  const register = (nodeModule as { register?: (specifier: string | URL, parentURL?: string | URL) => void }).register;
  if (!underTsx && register !== undefined) {
    register(pathToFileURL(entryPath("typescript/loader-thread")));
    installRequireHooks();
    process.setSourceMapsEnabled(true);
    globals[TS_LOADER] = "thread";
    return;
  }
  if (!underTsx) {
    // Both module systems: a worker library may be ESM or CommonJS TypeScript, as under `node --import tsx`.
    const [esm, cjs] = await Promise.all([import("tsx/esm/api"), import("tsx/cjs/api")]);
    esm.register();
    cjs.register();
  }
  globals[TS_LOADER] = "tsx";
}

/** The absolute file path a path-like specifier names, or undefined for a package name. */
export function modulePath(specifier: string, cwd: string): string | undefined {
  if (specifier.startsWith("file:")) return new URL(specifier).pathname;
  if (specifier.startsWith(".") || isAbsolute(specifier)) return resolve(cwd, specifier);
  return undefined;
}

/** Files that name a module by their extension: a name like `ext.ts` is a file, never a package. */
const MODULE_FILE = /\.(?:[cm]?[jt]s|[jt]sx)$/;

/** Whether a bare name (`dir/ext.ts`, `ext.ts`) names a module file rather than a package. */
export function looksLikeModuleFile(specifier: string): boolean {
  return MODULE_FILE.test(specifier);
}

/**
 * The absolute path of a path-like `specifier` whose file does not exist, or null (it exists, or it is a
 * package name, which `import()` resolves and reports itself). Checked before anything starts, so that a typo
 * is reported as what it is: `extension module not found: PATH`.
 */
export function missingModule(specifier: string, cwd: string): string | null {
  const path = modulePath(specifier, cwd);
  return path !== undefined && !existsSync(path) ? path : null;
}

/**
 * Imports `specifier` as `import()` would from a module in `cwd`, and returns its exports whatever its module
 * system (see `moduleExports`).
 */
export async function importFrom(specifier: string, cwd: string, options: { fresh?: boolean } = {}): Promise<Record<string, unknown>> {
  const path = modulePath(specifier, cwd);
  // A fresh import evaluates the module again: require() forgets a module whose evaluation threw, and an ES
  // module is imported under a new URL.
  const fresh = options.fresh === true ? "?bgworker-launch" : "";
  // Compiled files only while nothing is loaded through hooks: one module graph is loaded one way, so that no
  // module of it is ever evaluated twice under two URLs.
  const withoutHooks = path !== undefined && !startedUnderTsx() && typeScriptSupport() === undefined;
  const direct = withoutHooks ? await directModule(path) : undefined;
  if (direct !== undefined) {
    if (direct.endsWith(".cjs")) return moduleExports(createRequire(direct)(direct));
    return moduleExports(await import(pathToFileURL(direct).href + fresh));
  }
  // JavaScript that imports no TypeScript is Node's alone: a `.js` library needs no hooks either.
  const plain = withoutHooks && !TYPESCRIPT.test(path) && plainJavaScript(path);
  if (!plain) await ensureTypeScript();
  if (path !== undefined && moduleFormat(path) === "commonjs") {
    // Through require(), as Node itself runs CommonJS: tsx's ESM loader cannot run a `.cts` that imports an
    // ES module (`import ... from "bgworker"` compiles to require()), while its require hook can.
    return moduleExports(createRequire(path)(path));
  }
  if (path !== undefined) return moduleExports(await import(pathToFileURL(path).href + fresh));
  // A package name resolves from `cwd`'s node_modules, not from this file's location.
  const parent = pathToFileURL(resolve(cwd, "index.js")).href;
  if ((globalThis as ProcessGlobals)[TS_LOADER] !== "tsx") {
    return moduleExports(await import(`${PACKAGE_FROM}${encodeURIComponent(parent)}:${specifier}`));
  }
  const { tsImport } = await import("tsx/esm/api");
  return moduleExports(await tsImport(specifier, parent));
}

/**
 * A module's exports as one record. A CommonJS module imported from ESM (a `.cjs`/`.cts` file, or `.js`/`.ts`
 * in a `"type": "commonjs"` package or with no package.json) has its `module.exports` under `default`, and
 * only the names Node's static analysis spotted at the top level; TypeScript compiled to CommonJS often has
 * none there. So `default`'s own properties are added under the namespace's, which win.
 */
export function moduleExports(namespace: unknown): Record<string, unknown> {
  const record = namespace as Record<string, unknown>;
  const fallback = record["default"];
  if ((typeof fallback !== "object" && typeof fallback !== "function") || fallback === null) return record;
  const merged: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(fallback as Record<string, unknown>)) merged[name] = value;
  for (const [name, value] of Object.entries(record)) merged[name] = value;
  return merged;
}
