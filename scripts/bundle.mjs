// Bundles the JavaScript that tsc wrote into dist/ into a few modules, because each ES module Node loads costs
// a file read, a parse, a link and memory of its own: a worker's `import "bgworker"` of ~45 modules was the
// largest part of its boot (docs/performance.md, "Light workers").
//
// - The entries keep their paths: the package's export and bin, the runner that the postmaster forks and the
//   in-server child and registrar that the C extension starts by path.
// - Everything `import "bgworker"` loads statically, TypeScript support and the runner's own code are one
//   chunk (dist/chunks/core): the modules a worker loads in any case are one module, and a runner loads
//   three files (its entry, the core, the package's entry `dist/index.js`, which only re-exports the core)
//   where it loaded seven. Each ES module costs a runner's boot a resolve, a file read, a compile-cache read
//   and a link (about 0.5 ms of CPU on Node 26, more on Node 20); the runner's ~30 KB in the core cost the
//   other processes that load it less than that. What only some processes need stays lazy, in chunks of its
//   own: the postmaster's shell, SPI and `pg`, each CLI command.
// - Every entry and chunk of one process shares the same module instances (one build, one module graph).
// - The TypeScript loader that Node 20 runs on its own thread is a file on its own: it shares nothing with the
//   main thread, and needs none of the rest.
// - Node's built-in modules are taken with `process.getBuiltinModule()` (or `require`, on a Node 20 older than
//   20.16) instead of `import`: an `import` of a built-in makes Node build an ES module facade copying all of
//   its exports, and the seven a worker imported cost each runner's boot about 3 ms of CPU on Node 26.
// tsc's declaration files are left as they are: the package's types are unchanged.
import { mkdirSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { dirname, isAbsolute, join, relative, resolve } from "node:path";
import { rollup } from "rollup";

const DIST = resolve(process.argv[2] ?? "dist");
/** Every module that something other than an import loads, named from dist/ without `.js`. */
const ENTRIES = [
  "index", // the package's export
  "cli/main", // bin: bgworker, bgw
  "runtime/bootstrap", // forked by the postmaster for every runner
  "inserver/child", // started by the C extension for every in-server worker
  "inserver/register", // started by the C extension at server start, runs the modules' _PG_init
  "modules", // TypeScript support on its own (the bench measures its cost apart)
];
/**
 * The modules whose static imports make up the core chunk, themselves included but for the package's entry:
 * `modules` becomes a file that re-exports the core. The runner's module has no top-level effects (the
 * bootstrap calls it), so the core can carry it.
 */
const CORE_ROOTS = ["index", "modules", "runtime/runner"];
/** Module.register()'s loader, run on Node's loader thread: bundled alone. */
const LOADER_THREAD = "typescript/loader-thread";

const entryFile = (name) => join(DIST, `${name}.js`);
// Dependencies are the user's installed copies, resolved by Node as before; only the package's own code is bundled.
const external = (id) => !id.startsWith(".") && !isAbsolute(id);
const onwarn = (warning, warn) => {
  // Cycles between the package's modules are checked by test/unit/import-cycles.test.ts against its sources.
  if (warning.code !== "CIRCULAR_DEPENDENCY") warn(warning);
};
/**
 * The import statements of built-in modules, as rollup writes them: `import 'node:x';`, `import * as ns from
 * 'node:x';`, and `import def, { a, b as c } from 'node:x';` with either part alone.
 */
const BUILTIN_IMPORT = /^import (?:(?:([\w$]+)\s*,?\s*)?(?:\*\s+as\s+([\w$]+)|\{([^}]*)\})?\s*from\s*)?'(node:[\w/]+)';\n?/gm;
const BUILTIN = "__bgworkerBuiltin";

/** A chunk's built-in imports as bindings from `process.getBuiltinModule()`; see the header. */
function builtinsWithoutFacades(code) {
  let found = false;
  const rewritten = code.replace(BUILTIN_IMPORT, (_statement, defaultName, namespace, named, id) => {
    found = true;
    const lines = [];
    const module = `${BUILTIN}(${JSON.stringify(id)})`;
    // A built-in's default export and its namespace are both its exports object, as `require` gives it.
    for (const name of [defaultName, namespace]) if (name !== undefined) lines.push(`const ${name} = ${module};`);
    if (named !== undefined && named.trim() !== "") {
      const bindings = named.split(",").map((b) => b.trim()).filter((b) => b !== "").map((b) => b.replace(/^([\w$]+)\s+as\s+([\w$]+)$/, "$1: $2"));
      lines.push(`const { ${bindings.join(", ")} } = ${module};`);
    }
    return lines.map((line) => `${line}\n`).join("");
  });
  if (!found) return null;
  const left = /^import\b[^;]*'node:[^;]*;/m.exec(rewritten);
  if (left !== null) throw new Error(`bundle: an import of a built-in module that the rewrite does not know: ${left[0]}`);
  // `node:module` is the one facade left: its `createRequire` serves a Node without getBuiltinModule.
  const header = `import { createRequire as ${BUILTIN}Require } from 'node:module';\nconst ${BUILTIN} = process.getBuiltinModule ?? ${BUILTIN}Require(import.meta.url);\n`;
  // After a bin's `#!` line, which must stay the first.
  const shebang = /^#!.*\n/.exec(rewritten)?.[0] ?? "";
  return shebang + header + rewritten.slice(shebang.length);
}

const builtins = { name: "builtins-without-facades", renderChunk: (code) => builtinsWithoutFacades(code) };
/** Readable output: the code as tsc wrote it, with the functions' names, and no source maps to read. */
const output = { format: "es", generatedCode: "es2015", sourcemap: false, plugins: [builtins] };

function javascriptFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return javascriptFiles(path);
    return name.endsWith(".js") ? [path] : [];
  });
}

/** The modules reachable from `roots` through static imports (dynamic imports stay lazy). */
function staticClosure(roots, getModuleInfo) {
  const seen = new Set();
  const visit = (id) => {
    if (seen.has(id)) return;
    seen.add(id);
    for (const imported of getModuleInfo(id)?.importedIds ?? []) if (!external(imported)) visit(imported);
  };
  roots.forEach(visit);
  return seen;
}

const staging = join(DIST, ".bundle");
rmSync(staging, { recursive: true, force: true });

const roots = CORE_ROOTS.map(entryFile);
let core;
const library = await rollup({ input: Object.fromEntries(ENTRIES.map((name) => [name, entryFile(name)])), external, onwarn });
await library.write({
  ...output,
  dir: staging,
  entryFileNames: "[name].js",
  chunkFileNames: "chunks/[name]-[hash].js",
  manualChunks(id, { getModuleInfo }) {
    core ??= staticClosure(roots, getModuleInfo);
    // The package's entry stays a file of its own, which the core imports by that name (spare.ts): it is the
    // file a library's `import "bgworker"` loads.
    return core.has(id) && id !== entryFile("index") ? "core" : undefined;
  },
});
await library.close();

const loader = await rollup({ input: entryFile(LOADER_THREAD), external, onwarn });
await loader.write({ ...output, file: join(staging, `${LOADER_THREAD}.js`), inlineDynamicImports: true });
await loader.close();

// The modules tsc wrote are replaced by the bundle's: none of them stays to be loaded by mistake.
for (const file of javascriptFiles(DIST)) if (!file.startsWith(staging)) rmSync(file);
for (const file of javascriptFiles(staging)) {
  const target = join(DIST, relative(staging, file));
  mkdirSync(dirname(target), { recursive: true });
  renameSync(file, target);
}
rmSync(staging, { recursive: true, force: true });
