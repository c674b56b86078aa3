// The compiler's identity in every cache key: esbuild's package.json, found without the CommonJS resolver.
import assert from "node:assert/strict";
import { realpathSync } from "node:fs";
import { createRequire } from "node:module";
import { test } from "node:test";
import { esbuildManifest } from "../../src/typescript/compile.js";

test("esbuild's package.json is the one require.resolve() finds from the compiler's module", () => {
  const resolved = createRequire(new URL("../../src/typescript/compile.ts", import.meta.url)).resolve("esbuild/package.json");
  // The resolver gives the real path; under a store of symlinked packages (pnpm) the walk's differs.
  assert.equal(realpathSync(esbuildManifest()), resolved);
});
