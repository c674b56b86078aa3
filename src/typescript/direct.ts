/**
 * TypeScript modules that Node loads as plain files, with no module hooks in the process. A worker library
 * written in TypeScript is compiled module by module into the cache (compile.ts's directory, `direct/`): each
 * module's file is named by its path (not its content), and its imports of the library's other TypeScript
 * modules are rewritten to those modules' files, its imports of packages to the files Node itself would load
 * (so that `bgworker`, `pg` or any package stays the one instance of the process). Node then imports the
 * entry's compiled file as it would any `.mjs` or `.cjs`: no resolve or load hook runs, so a worker on
 * Node 20 needs no loader thread, and on later lines no hooks in its thread.
 *
 * Each compiled file has a record beside it (the source it was compiled from, the TypeScript modules it
 * imports); a library is loaded directly only once every module of its graph is checked against its source,
 * and recompiled where the source changed. A graph is loaded the usual way, through the hooks, whenever
 * something in it needs them: an import whose specifier is not a literal (`import(name)`, `require(name)`),
 * `import.meta.resolve` or `require.resolve` (they would resolve from the cache), an import of a file that is
 * neither TypeScript nor JavaScript, a JavaScript file of the project (it may import TypeScript), an import
 * that does not resolve, or a syntax error (reported by the hooks' compile, with its file and line).
 * `import.meta.url`, `import.meta.dirname`, `import.meta.filename`, `__dirname` and `__filename` name the
 * source file, and inline source maps make stack traces name its `.ts` lines.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { isBuiltin } from "node:module";
import { dirname, join, sep } from "node:path";
import { pathToFileURL } from "node:url";
import type { Plugin } from "esbuild";
import { packageRoot } from "../package-paths.js";
import { cache, compileKey, compiler, spread, TARGET, type CompiledFormat } from "./compile.js";
import { moduleFormat } from "./format.js";
import { TYPESCRIPT } from "./resolution.js";

/** The record kept beside each compiled file. */
interface Compiled {
  readonly key: string;
  readonly source: string;
  /** The TypeScript modules this one imports (absolute paths), each compiled beside it. */
  readonly imports: readonly string[];
  /**
   * The files of packages it imports, as resolved when it was compiled: a package moved or removed since (a
   * new version in a store laid out by version) makes the module compile again, resolving afresh.
   */
  readonly packages: readonly string[];
  /** False when the module needs the hooks (see the header); its file is then never loaded. */
  readonly direct: boolean;
}

const JAVASCRIPT = /\.[cm]?js$/;
/** An import or require of a computed name: nothing can rewrite it to a compiled file. */
const COMPUTED_IMPORT = /\bimport\s*\(\s*(?!["'])|\brequire\s*\(\s*(?!["'])/;
/** In compiled code: a computed import, or a resolution that would be relative to the cache. */
const NEEDS_HOOKS = new RegExp(`${COMPUTED_IMPORT.source}|\\bimport\\.meta\\.resolve\\b|\\brequire\\.resolve\\b`);
/** Passed to esbuild's own resolver from the plugin, so that the plugin does not resolve its own lookups. */
const LOOKUP = Symbol("bgworker-direct-lookup");

let directDir: string | null | undefined;

/** The cache's `direct/` directory, made once per process; null without a cache. */
function directory(): string | null {
  if (directDir !== undefined) return directDir;
  const root = cache();
  directDir = null;
  if (root === null) return directDir;
  try {
    mkdirSync(join(root, "direct"), { recursive: true, mode: 0o700 });
    directDir = join(root, "direct");
  } catch {
    // no directory: the hooks serve
  }
  return directDir;
}

/**
 * The form of the files this module writes, in every key: a change to how imports are rewritten (version 2:
 * CommonJS output requires paths, not `file:` URLs) makes every module compile again instead of loading a
 * file an older package wrote into the same cache.
 */
const REWRITE_VERSION = 2;

/** Where the module at `path` is compiled to: named by its key, so its importers' files never change with its source. */
function fileOf(dir: string, path: string): { code: string; record: string; key: string; format: CompiledFormat } {
  const format = moduleFormat(path);
  const key = `${compileKey(path, format)}\0direct ${REWRITE_VERSION}`;
  const name = join(dir, spread(key));
  return { code: `${name}${format === "commonjs" ? ".cjs" : ".mjs"}`, record: `${name}.json`, key, format };
}

/** The module's record if its compiled file is current (same key and source), else undefined. */
function current(dir: string, path: string): Compiled | undefined {
  const { record, key } = fileOf(dir, path);
  try {
    const compiled = JSON.parse(readFileSync(record, "utf8")) as Compiled;
    const fresh = compiled.key === key && compiled.source === readFileSync(path, "utf8") && compiled.packages.every((file) => existsSync(file));
    return fresh ? compiled : undefined;
  } catch {
    return undefined;
  }
}

/** Written whole under a temporary name, then renamed: a reader sees no file or the complete one. */
function writeWhole(file: string, text: string): void {
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, text, { mode: 0o600 });
  renameSync(temporary, file);
}

/** A file of the user's project rather than of an installed package or of bgworker itself. */
function inProject(path: string): boolean {
  return !path.includes(`${sep}node_modules${sep}`) && !path.startsWith(packageRoot() + sep);
}

/** What `import.meta` and CommonJS's file names stand for: the source file, not the compiled one. */
function sourceNames(path: string, format: CompiledFormat): Record<string, string> {
  const names = {
    "import.meta.url": JSON.stringify(pathToFileURL(path).href),
    "import.meta.filename": JSON.stringify(path),
    "import.meta.dirname": JSON.stringify(dirname(path)),
  };
  return format === "commonjs" ? { ...names, __filename: names["import.meta.filename"], __dirname: names["import.meta.dirname"] } : names;
}

/** One module compiled, not yet written: its record, and its code when it can be loaded directly. */
interface Output {
  readonly path: string;
  readonly compiled: Compiled;
  readonly code: string;
}

/** Compiles one module, its imports rewritten; writing it is store()'s. */
async function compile(dir: string, path: string): Promise<Output> {
  const { code: file, key, format } = fileOf(dir, path);
  const source = readFileSync(path, "utf8");
  const imports = new Set<string>();
  const packages = new Set<string>();
  let direct = true;
  const rewrite: Plugin = {
    name: "bgworker-direct",
    setup(build) {
      // `require()` takes a path; an ES module's `import` and any `import()` take a URL, which also carries a
      // path's `%` or `#` intact. esbuild turns a CommonJS module's import statements into `require()` calls.
      build.onResolve({ filter: /.*/ }, async (args) => {
        if (args.kind === "entry-point" || args.pluginData === LOOKUP) return undefined;
        const reference = (file: string): string => (format === "commonjs" && args.kind !== "dynamic-import" ? file : pathToFileURL(file).href);
        if (isBuiltin(args.path)) return { path: args.path, external: true };
        const found = await build.resolve(args.path, { kind: args.kind, resolveDir: args.resolveDir, importer: args.importer, pluginData: LOOKUP });
        if (found.errors.length === 0 && !found.external && TYPESCRIPT.test(found.path)) {
          imports.add(found.path);
          return { path: reference(fileOf(dir, found.path).code), external: true };
        }
        if (found.errors.length === 0 && !found.external && JAVASCRIPT.test(found.path) && !inProject(found.path)) {
          packages.add(found.path);
          return { path: reference(found.path), external: true };
        }
        direct = false;
        return { path: args.path, external: true };
      });
    },
  };
  let code = "";
  try {
    const result = await compiler().build({
      entryPoints: [path],
      bundle: true,
      write: false,
      // Only names the output, so that the source map's paths lead back from the cache to the source.
      outfile: file,
      format: format === "commonjs" ? "cjs" : "esm",
      platform: "node",
      target: TARGET,
      // Node's own resolution: a package's `main` (not `module`), the `node` condition with `import` or `require`.
      mainFields: ["main"],
      conditions: ["node"],
      define: sourceNames(path, format),
      sourcemap: "inline",
      logLevel: "silent",
      plugins: [rewrite],
    });
    code = result.outputFiles[0]?.text ?? "";
  } catch {
    direct = false; // a syntax error: the hooks' compile reports it
  }
  if (NEEDS_HOOKS.test(code)) direct = false;
  return { path, compiled: { key, source, imports: [...imports], packages: [...packages], direct }, code };
}

/**
 * Writes what a walk compiled, the modules it found last first: a module's new file never appears before the
 * files of the modules it newly imports, so a process loading the library at that moment finds either the
 * old graph or the whole new one. False if something could not be written (the hooks serve this time).
 */
function store(dir: string, outputs: readonly Output[]): boolean {
  try {
    for (const { path, compiled, code } of [...outputs].reverse()) {
      const { code: file, record } = fileOf(dir, path);
      if (compiled.direct) writeWhole(file, code);
      writeWhole(record, JSON.stringify(compiled));
    }
    return true;
  } catch {
    return false; // a full disk or a removed directory
  }
}

/** Walks of a graph in progress in this process. */
let walks = 0;

/**
 * The compiled file to import for the TypeScript module at `path`, with every module of its graph current;
 * undefined when the graph needs the hooks or there is no cache. Compiles what changed (esbuild, stopped
 * afterwards so that no compiler process stays beside the worker).
 */
export async function directModule(path: string): Promise<string | undefined> {
  const dir = directory();
  if (dir === null || !TYPESCRIPT.test(path)) return undefined;
  const seen = new Set<string>();
  const pending = [path];
  const outputs: Output[] = [];
  let loadable = true;
  walks += 1;
  try {
    while (loadable && pending.length > 0) {
      const next = pending.pop()!;
      if (seen.has(next)) continue;
      seen.add(next);
      let record = current(dir, next);
      if (record === undefined) {
        const output = await compile(dir, next);
        outputs.push(output);
        record = output.compiled;
      }
      loadable = record.direct;
      pending.push(...record.imports);
    }
  } catch {
    loadable = false; // an unreadable source: the hooks report it as Node would
  }
  walks -= 1;
  // Written whether or not the graph can be loaded directly: a module that needs the hooks is known as such.
  const stored = store(dir, outputs);
  // Stopped once no other walk of this process (libraries preloaded side by side) may still be compiling.
  if (outputs.length > 0 && walks === 0) await compiler().stop();
  if (!loadable || !stored) return undefined;
  process.setSourceMapsEnabled(true);
  return fileOf(dir, path).code;
}

/** The literal specifiers of a JavaScript module's imports, exports, dynamic imports and requires. */
const SPECIFIERS = [
  /\b(?:import|export)\s[^;]*?\bfrom\s*["']([^"']+)["']/g,
  /\bimport\s*["']([^"']+)["']/g,
  /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g,
  /\brequire\s*\(\s*["']([^"']+)["']\s*\)/g,
];
/** A relative import Node resolves as written: a file with its JavaScript extension (or JSON). */
const PLAIN_FILE = /\.(?:[cm]?js|json)$/;

/**
 * Whether the JavaScript module at `path`, and the project's JavaScript it imports by relative path, can be
 * loaded by Node as it is: every relative import names an existing JavaScript or JSON file, none names
 * TypeScript, and none is computed (`import(name)`, `require(name)`). Read from the sources with patterns:
 * anything they cannot vouch for (a `.ts` import, an extensionless one, a computed one, even in a comment)
 * answers false, and the module hooks load the library instead.
 */
export function plainJavaScript(path: string, seen = new Set<string>()): boolean {
  if (seen.has(path)) return true;
  seen.add(path);
  let source: string;
  try {
    source = readFileSync(path, "utf8");
  } catch {
    return false;
  }
  if (COMPUTED_IMPORT.test(source)) return false;
  for (const pattern of SPECIFIERS) {
    for (const [, specifier] of source.matchAll(pattern)) {
      if (specifier === undefined || !(specifier.startsWith("./") || specifier.startsWith("../"))) continue;
      const target = join(dirname(path), specifier);
      if (!PLAIN_FILE.test(target) || !existsSync(target)) return false;
      if (JAVASCRIPT.test(target) && inProject(target) && !plainJavaScript(target, seen)) return false;
    }
  }
  return true;
}

