/**
 * Loading user modules (extensions in the postmaster, worker libraries in workers) the way `import()`
 * would from the postmaster's working directory, TypeScript included.
 */
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, extname, isAbsolute, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const TS_LOADER = Symbol.for("bgworker.typescript-loader");

/**
 * Makes `.ts` modules importable in this process, once. A process started with tsx's loader (worker
 * runners, `node --import tsx`) already has it.
 */
export async function ensureTypeScript(): Promise<void> {
  const slots = globalThis as { [TS_LOADER]?: true };
  if (slots[TS_LOADER]) return;
  const started = [...process.execArgv, process.env.NODE_OPTIONS ?? ""].some((arg) => /\btsx\b/.test(arg));
  if (!started) {
    // Both module systems: a worker library may be ESM or CommonJS TypeScript, as under `node --import tsx`.
    const [esm, cjs] = await Promise.all([import("tsx/esm/api"), import("tsx/cjs/api")]);
    esm.register();
    cjs.register();
  }
  slots[TS_LOADER] = true;
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
export async function importFrom(specifier: string, cwd: string): Promise<Record<string, unknown>> {
  const path = modulePath(specifier, cwd);
  if (path !== undefined && moduleFormat(path) === "commonjs") {
    // Through require(), as Node itself runs CommonJS: tsx's ESM loader cannot run a `.cts` that imports an
    // ES module (`import ... from "bgworker"` compiles to require()), while its require hook can.
    return moduleExports(createRequire(path)(path));
  }
  if (path !== undefined) return moduleExports(await import(pathToFileURL(path).href));
  // A package name resolves from `cwd`'s node_modules, not from this file's location.
  const { tsImport } = await import("tsx/esm/api");
  return moduleExports(await tsImport(specifier, pathToFileURL(resolve(cwd, "index.js")).href));
}

/**
 * Whether Node runs the file at `path` as CommonJS or as an ES module: by its extension (`.cjs`/`.cts`,
 * `.mjs`/`.mts`), else by the `type` of the nearest package.json (CommonJS when there is none, or no `type`).
 */
export function moduleFormat(path: string, packageType: (dir: string) => string | null | undefined = nearestPackageType): "commonjs" | "module" {
  const ext = extname(path);
  if (ext === ".cjs" || ext === ".cts") return "commonjs";
  if (ext === ".mjs" || ext === ".mts") return "module";
  return packageType(dirname(path)) === "module" ? "module" : "commonjs";
}

/** The `type` of the package.json nearest above `dir` ("" when it has none), or null when there is none. */
function nearestPackageType(dir: string): string | null {
  for (let current = dir; ; current = dirname(current)) {
    try {
      const type = (JSON.parse(readFileSync(join(current, "package.json"), "utf8")) as { type?: unknown }).type;
      return typeof type === "string" ? type : "";
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") return ""; // unreadable or malformed: Node's default
    }
    if (dirname(current) === current) return null;
  }
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
