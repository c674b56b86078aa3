/**
 * Loading user modules (extensions in the postmaster, worker libraries in workers) the way `import()`
 * would from the postmaster's working directory, TypeScript included.
 */
import { isAbsolute, resolve } from "node:path";
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

/** Imports `specifier` as `import()` would from a module in `cwd`. */
export async function importFrom(specifier: string, cwd: string): Promise<Record<string, unknown>> {
  const path = modulePath(specifier, cwd);
  if (path !== undefined) return (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  // A package name resolves from `cwd`'s node_modules, not from this file's location.
  const { tsImport } = await import("tsx/esm/api");
  return (await tsImport(specifier, pathToFileURL(resolve(cwd, "index.js")).href)) as Record<string, unknown>;
}
