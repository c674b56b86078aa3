/**
 * TypeScript modules for `import` and `require()` through Node's in-thread module hooks (`module.registerHooks`,
 * Node 22.15 and later): no loader thread, and no compiler in the process (compile.ts serves each module's
 * JavaScript from a cache shared by content). The resolution and the compiled source are resolution.ts's.
 */
import * as nodeModule from "node:module";
import {
  compiledModule,
  isNotFound,
  packageFrom,
  typescriptFileFor,
  type LoadContext,
  type LoadResult,
  type ResolveContext,
  type ResolveResult,
} from "./resolution.js";

export { PACKAGE_FROM } from "./resolution.js";

interface SyncHooks {
  resolve(specifier: string, context: ResolveContext, next: (specifier: string, context?: ResolveContext) => ResolveResult): ResolveResult;
  load(url: string, context: LoadContext, next: (url: string, context?: LoadContext) => LoadResult): LoadResult;
}
type RegisterHooks = (hooks: SyncHooks) => unknown;

function resolve(specifier: string, context: ResolveContext, next: (specifier: string, context?: ResolveContext) => ResolveResult): ResolveResult {
  const fromPackage = packageFrom(specifier);
  if (fromPackage !== undefined) return resolve(fromPackage.specifier, { ...context, parentURL: fromPackage.parentURL }, next);
  try {
    return next(specifier, context);
  } catch (error) {
    if (!isNotFound(error)) throw error;
    // The file is known: both module systems take its URL as the resolution.
    const url = typescriptFileFor(specifier, context.parentURL);
    if (url === undefined) throw error;
    return { url, shortCircuit: true };
  }
}

function load(url: string, context: LoadContext, next: (url: string, context?: LoadContext) => LoadResult): LoadResult {
  const compiled = compiledModule(url);
  return compiled === undefined ? next(url, context) : { ...compiled, shortCircuit: true };
}

let installed = false;

/**
 * Installs the hooks in this process, once; returns false on a Node line without in-thread hooks (the caller
 * then uses the loader thread). Source maps are turned on so that stack traces name `.ts` lines.
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
