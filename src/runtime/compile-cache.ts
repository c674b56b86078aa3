/**
 * V8's compile cache for runner processes. Every runner parses the same modules (this package's runtime and
 * the worker libraries, compiled files from the TypeScript cache); with Node's compile cache (Node 22.1+,
 * `NODE_COMPILE_CACHE`) the runners after the first deserialize that code instead, which takes about 4 ms off
 * each boot on Node 26. Node 20 ignores the variable.
 *
 * The postmaster names the directory in each runner's environment, inside the TypeScript cache's owner-only
 * directory (cached code is code this process runs: no other user may write it). A user's own
 * `NODE_COMPILE_CACHE` is left as it is. The runner takes the variable out of its environment as it boots, so
 * that the programs a worker starts do not inherit it.
 */
import * as nodeModule from "node:module";
import { join } from "node:path";

const VARIABLE = "NODE_COMPILE_CACHE";
/** Set beside it by the postmaster: the variable is the postmaster's, not the user's. */
const MARK = "BGWORKER_COMPILE_CACHE";

/** The environment to fork runners with: `base` and, unless the user chose one, the compile cache in `cacheRoot`. */
export function runnerEnvironment(base: NodeJS.ProcessEnv, cacheRoot: string | null): NodeJS.ProcessEnv {
  if (cacheRoot === null || base[VARIABLE] !== undefined || base["NODE_DISABLE_COMPILE_CACHE"] !== undefined) return base;
  const dir = join(cacheRoot, "v8");
  return { ...base, [VARIABLE]: dir, [MARK]: dir };
}

/** In a runner: the postmaster's compile cache variables leave the environment (Node read them at start). */
export function forgetRunnerCompileCache(env: NodeJS.ProcessEnv = process.env): void {
  if (env[MARK] === undefined) return;
  if (env[VARIABLE] === env[MARK]) delete env[VARIABLE];
  delete env[MARK];
}

/**
 * Writes what this process compiled into the cache now (Node 22.10+), rather than at its exit: a spare may
 * live for hours, and the next runner's boot should find the runtime's code already there.
 */
export function flushCompileCache(): void {
  (nodeModule as { flushCompileCache?: () => void }).flushCompileCache?.();
}
