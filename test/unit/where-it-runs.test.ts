import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { moduleExports, moduleFormat } from "../../src/modules.js";

describe("module formats", () => {
  test("the extension decides, else the nearest package.json's type, else CommonJS", () => {
    const types: Record<string, string | null> = { "/esm": "module", "/cjs": "commonjs", "/plain": "", "/none": null };
    const typeOf = (dir: string): string | null => types[dir] ?? null;
    assert.equal(moduleFormat("/esm/a.cts", typeOf), "commonjs");
    assert.equal(moduleFormat("/cjs/a.mjs", typeOf), "module");
    assert.equal(moduleFormat("/esm/a.ts", typeOf), "module");
    assert.equal(moduleFormat("/esm/a.js", typeOf), "module");
    assert.equal(moduleFormat("/cjs/a.ts", typeOf), "commonjs");
    assert.equal(moduleFormat("/plain/a.js", typeOf), "commonjs");
    assert.equal(moduleFormat("/none/a.ts", typeOf), "commonjs");
  });

  test("CommonJS exports under default are found; the namespace's own names win", () => {
    const init = (): void => undefined;
    assert.equal(moduleExports({ default: { _PG_init: init } })["_PG_init"], init);
    const own = (): void => undefined;
    assert.equal(moduleExports({ _PG_init: own, default: { _PG_init: init } })["_PG_init"], own);
    assert.equal(moduleExports({ default: 42, work: own })["work"], own);
    assert.equal(moduleExports({ default: { other: 1 } })["_PG_init"], undefined, "a module that lacks it still lacks it");
  });
});
