/**
 * `require()` of TypeScript where Node has no in-thread module hooks (20, and 22 before 22.15): CommonJS's own
 * extension points, in the main thread. A `.ts`/`.cts`/`.mts` file is compiled to CommonJS (TypeScript's own
 * output for a CommonJS module); a specifier Node cannot resolve is tried by TypeScript's resolution; and an
 * ES module that Node 20 would refuse to `require()` (this package, when a CommonJS library requires it) is
 * compiled to CommonJS too. Each copy of this package shares its process-wide state through `globalThis`.
 */
import { readFileSync } from "node:fs";
import Module from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";
import { compileModule } from "./compile.js";
import { moduleFormat } from "./format.js";
import { isNotFound, typescriptFileFor } from "./resolution.js";

interface CommonJsModule {
  _compile(code: string, filename: string): unknown;
}
type ExtensionHandler = (module: CommonJsModule, filename: string) => void;
interface ModuleInternals {
  _extensions: Record<string, ExtensionHandler>;
  _resolveFilename(request: string, parent: { filename?: string | null } | null | undefined, isMain: boolean, options?: unknown): string;
}

let installed = false;

export function installRequireHooks(): void {
  if (installed) return;
  installed = true;
  const internals = Module as unknown as ModuleInternals;
  const compiled: ExtensionHandler = (module, filename) => {
    module._compile(compileModule(filename, readFileSync(filename, "utf8"), "commonjs"), filename);
  };
  for (const extension of [".ts", ".cts", ".mts", ".tsx"]) internals._extensions[extension] = compiled;
  const javascript = internals._extensions[".js"]!;
  internals._extensions[".js"] = (module, filename) => (moduleFormat(filename) === "module" ? compiled(module, filename) : javascript(module, filename));
  internals._extensions[".mjs"] = compiled;

  const resolveFilename = internals._resolveFilename;
  internals._resolveFilename = function (request, parent, isMain, options) {
    try {
      return resolveFilename.call(this, request, parent, isMain, options);
    } catch (error) {
      const from = parent?.filename;
      if (!isNotFound(error) || typeof from !== "string") throw error;
      const url = typescriptFileFor(request, pathToFileURL(from).href);
      if (url === undefined) throw error;
      return fileURLToPath(url);
    }
  };
}
