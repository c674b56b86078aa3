/**
 * The TypeScript hooks on Node's loader thread (`module.register`), for Node lines without in-thread hooks
 * (20, and 22 before 22.15): the resolution and compiled source of resolution.ts, as asynchronous hooks.
 * `require()` is served in the main thread by require-hooks.ts.
 */
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

type Next<A, C, R> = (value: A, context?: C) => R | Promise<R>;

export async function resolve(specifier: string, context: ResolveContext, next: Next<string, ResolveContext, ResolveResult>): Promise<ResolveResult> {
  const fromPackage = packageFrom(specifier);
  if (fromPackage !== undefined) return resolve(fromPackage.specifier, { ...context, parentURL: fromPackage.parentURL }, next);
  try {
    return await next(specifier, context);
  } catch (error) {
    if (!isNotFound(error)) throw error;
    const url = typescriptFileFor(specifier, context.parentURL);
    if (url === undefined) throw error;
    return { url, shortCircuit: true };
  }
}

export async function load(url: string, context: LoadContext, next: Next<string, LoadContext, LoadResult>): Promise<LoadResult> {
  const compiled = compiledModule(url);
  return compiled === undefined ? next(url, context) : { ...compiled, shortCircuit: true };
}
