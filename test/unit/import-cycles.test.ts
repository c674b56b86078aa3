/**
 * No import cycle among the package's modules at run time. A cycle makes module evaluation order depend on
 * which module is loaded first: a module can then run while a binding it imports is still uninitialised
 * (a TDZ ReferenceError on a `class` or `const`), and a pure module (the state machine, the handle format)
 * drags in everything on the cycle.
 *
 * What counts: the static edges of the emitted JavaScript, `import ... from "./x.js"`, `import "./x.js"` and
 * `export ... from "./x.js"` with a relative specifier, since those are what ESM links and evaluates before
 * the importing module's body runs. `import type` and imports used only as types are erased by tsc and are
 * not edges. A dynamic `import("./x.js")` is not an edge either: it is evaluated later, once its caller runs,
 * after every module on the static graph has finished evaluating, so it cannot close an evaluation cycle.
 *
 * The modules read are the package's sources, each src/**\/*.ts file transpiled in memory, which drops the
 * type-only imports as tsc does. (dist/ is bundled into a few modules by scripts/bundle.mjs, so the module
 * graph the package is written in is the sources'; the bundle keeps its evaluation order.)
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, posix, relative, resolve, sep } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const SRC = join(ROOT, "src");

/** Module name (path under its root, in the emitted `.js` form) -> the modules it imports statically. */
type Graph = Map<string, Set<string>>;

function filesUnder(dir: string, suffix: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((name) => name.endsWith(suffix) && !name.endsWith(".d.ts"))
    .map((name) => join(dir, name));
}

/** The relative specifiers of a module's top-level static imports and re-exports: ESM allows them nowhere else. */
function staticSpecifiers(fileName: string, javascript: string): string[] {
  const source = ts.createSourceFile(fileName, javascript, ts.ScriptTarget.ES2022, false, ts.ScriptKind.JS);
  const specifiers: string[] = [];
  for (const statement of source.statements) {
    const specifier =
      ts.isImportDeclaration(statement) || ts.isExportDeclaration(statement) ? statement.moduleSpecifier : undefined;
    if (specifier !== undefined && ts.isStringLiteral(specifier) && specifier.text.startsWith(".")) {
      specifiers.push(specifier.text);
    }
  }
  return specifiers;
}

/** The graph of `files` under `root`; `emit` turns a file into the JavaScript Node would evaluate. */
function graphOf(root: string, files: readonly string[], emit: (file: string) => string, asJs: (name: string) => string): Graph {
  const name = (file: string): string => asJs(relative(root, file).split(sep).join(posix.sep));
  const graph: Graph = new Map();
  for (const file of files) {
    const from = name(file);
    const edges = new Set<string>();
    for (const specifier of staticSpecifiers(file, emit(file))) edges.add(name(resolve(dirname(file), specifier)));
    graph.set(from, edges);
  }
  return graph;
}

function sourceGraph(): Graph {
  const options: ts.CompilerOptions = { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 };
  const emit = (file: string): string => ts.transpileModule(readFileSync(file, "utf8"), { compilerOptions: options, fileName: file }).outputText;
  return graphOf(SRC, filesUnder(SRC, ".ts"), emit, (name) => name.replace(/\.ts$/, ".js"));
}

/** Tarjan's strongly connected components; a component of two or more modules, or one importing itself, is a cycle. */
function cyclicComponents(graph: Graph): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const visit = (node: string): void => {
    index.set(node, index.size);
    low.set(node, index.get(node)!);
    stack.push(node);
    onStack.add(node);
    for (const next of graph.get(node) ?? []) {
      if (!graph.has(next)) continue; // outside the walked files; a missing module is another test's failure
      if (!index.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node)!, low.get(next)!));
      } else if (onStack.has(next)) {
        low.set(node, Math.min(low.get(node)!, index.get(next)!));
      }
    }
    if (low.get(node) === index.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1 || graph.get(node)!.has(node)) components.push(component.sort());
    }
  };
  for (const node of [...graph.keys()].sort()) if (!index.has(node)) visit(node);
  return components;
}

/** One shortest cycle through `start` inside `component`, as `a.js -> b.js -> a.js`, so a failure names a path to cut. */
function cycleThrough(graph: Graph, component: readonly string[], start: string): string {
  const inside = new Set(component);
  const previous = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const node = queue.shift()!;
    for (const next of [...(graph.get(node) ?? [])].sort()) {
      if (!inside.has(next)) continue;
      if (next === start) {
        const path = [node];
        while (path[0] !== start) path.unshift(previous.get(path[0]!)!);
        return [...path, start].join(" -> ");
      }
      if (!previous.has(next)) {
        previous.set(next, node);
        queue.push(next);
      }
    }
  }
  return component.join(", ");
}

describe("import cycles", () => {
  const graph = sourceGraph();

  it("reads the module graph (src/, transpiled)", () => {
    // Guards against a walk that finds nothing and so passes vacuously.
    assert.ok(graph.has("index.js"), "index.js is among the modules walked");
    assert.ok((graph.get("index.js")?.size ?? 0) > 0, "index.js imports other modules");
  });

  it("has no cycle among the static imports evaluated at run time", () => {
    const cycles = cyclicComponents(graph).map(
      (component) => `${component.length} modules: ${component.join(", ")}\n    e.g. ${cycleThrough(graph, component, component[0]!)}`,
    );
    assert.deepEqual(cycles, [], `import cycles at run time:\n  ${cycles.join("\n  ")}`);
  });

  it("keeps the handle format a leaf: it loads nothing of the package but errors.js", () => {
    assert.deepEqual([...(graph.get("handle-format.js") ?? ["(handle-format.js not found)"])], ["errors.js"]);
    assert.deepEqual([...(graph.get("errors.js") ?? ["(errors.js not found)"])], []);
  });
});
