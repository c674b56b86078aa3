/**
 * Where the package's own files are, from whichever of its modules asks. Built, the package's modules are
 * bundled (scripts/bundle.mjs): an entry stays at its path under dist/, but the code it shares with the other
 * entries lives in dist/chunks/, so a path relative to a module's own URL would depend on where the bundler
 * put that module. Every path to one of the package's files is made here, from the package's root instead.
 */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** True when the package runs from its TypeScript sources (`node --import tsx`, the test suite). */
export const FROM_SOURCE = import.meta.url.endsWith(".ts");

let root: string | undefined;

/**
 * The package's root: the nearest directory above this module with a package.json (none is in src/ or dist/).
 * Found on first use, not at import: every process that imports the package would pay for the walk.
 */
export function packageRoot(): string {
  root ??= findRoot(dirname(fileURLToPath(import.meta.url)));
  return root;
}

function findRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, "package.json"))) return dir;
    if (dirname(dir) === dir) return join(from, "..", ".."); // no package.json above: the layout src/x, dist/x
  }
}

/**
 * The path of one of the package's entry modules, named without extension from src/ (`"runtime/bootstrap"`):
 * its `.ts` source when the package runs from source, else the built `.js` under dist/.
 */
export function entryPath(name: string): string {
  return FROM_SOURCE ? join(packageRoot(), "src", `${name}.ts`) : join(packageRoot(), "dist", `${name}.js`);
}
