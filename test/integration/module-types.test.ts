/**
 * Extensions and worker libraries in every module format a project may use: `.ts .mts .cts .js .mjs .cjs`, in a
 * `"type": "module"` package, a `"type": "commonjs"` package (what `npm init -y` writes) and with no
 * package.json at all, loaded through the built CLI. Each extension registers a worker from the library of the
 * same format; each worker says which one it is.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { CLI, ROOT, RunningPostmaster, runNode } from "../helpers/postmaster.js";

type PackageType = "module" | "commonjs" | "none";
const FORMATS = ["ts", "mts", "cts", "js", "mjs", "cjs"] as const;
type Format = (typeof FORMATS)[number];

/** Whether a file of this format is CommonJS source (written with require/exports) in such a package. */
function writtenAsCommonJs(format: Format, type: PackageType): boolean {
  return format === "cjs" || (format === "js" && type !== "module");
}

/** The extension: registers worker `w_FORMAT` from `./worker_FORMAT.FORMAT`; TypeScript keeps ESM syntax, as users write it. */
function extensionSource(format: Format, type: PackageType, fn = "work"): string {
  const register = `new BackgroundWorkerBuilder("w_${format}").setLibrary("./worker_${format}.${format}").setFunction("${fn}").setRestartTime(null).load();`;
  if (writtenAsCommonJs(format, type)) {
    return `const { BackgroundWorkerBuilder } = require("bgworker");\nexports._PG_init = function () { ${register} };\n`;
  }
  const typed = format.endsWith("ts") ? ": void" : "";
  return `import { BackgroundWorkerBuilder } from "bgworker";\nexport function _PG_init()${typed} { ${register} }\n`;
}

/**
 * The worker: uses the package as users do (`require` in CommonJS, `import` in ES modules) and says which
 * format it is and which worker runs it. A spare preloads the library while it imports the package itself.
 */
function workerSource(format: Format, type: PackageType): string {
  const body = `console.log("worked ${format} as " + BackgroundWorker.getName());`;
  if (writtenAsCommonJs(format, type)) return `const { BackgroundWorker } = require("bgworker");\nexports.work = function () { ${body} };\n`;
  return `import { BackgroundWorker } from "bgworker";\nexport function work()${format.endsWith("ts") ? ": void" : ""} { ${body} }\n`;
}

/** A project directory that imports `bgworker` by name, as an installed project would. */
function project(type: PackageType): string {
  const dir = mkdtempSync(join(tmpdir(), `bgw-${type}-`));
  mkdirSync(join(dir, "node_modules"));
  symlinkSync(ROOT, join(dir, "node_modules", "bgworker"));
  if (type !== "none") writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "app", type }));
  for (const format of FORMATS) {
    writeFileSync(join(dir, `ext_${format}.${format}`), extensionSource(format, type));
    writeFileSync(join(dir, `worker_${format}.${format}`), workerSource(format, type));
  }
  return dir;
}

describe("module formats of extensions and worker libraries", () => {
  for (const type of ["module", "commonjs", "none"] as const) {
    it(`every format ${type === "none" ? "with no package.json" : `in a "type": "${type}" package`}`, async () => {
      const dir = project(type);
      const extensions = FORMATS.map((format) => `./ext_${format}.${format}`);
      const child = spawn(process.execPath, [CLI, "start", ...extensions, "--no-database", "--log-format", "json"], {
        cwd: dir,
        stdio: ["ignore", "pipe", "pipe"],
      });
      const postmaster = new RunningPostmaster(child, dir);
      try {
        await Promise.race([
          postmaster.until("ready", () => (postmaster.stdout.includes("ready") ? true : undefined)),
          postmaster.exited.then(({ code }) => assert.fail(`postmaster exited with ${code}\n${postmaster.transcript()}`)),
        ]);
        for (const format of FORMATS) await postmaster.waitForLog(new RegExp(`^worked ${format} as w_${format}$`));
        assert.deepEqual(postmaster.logs(/not found in library|exports no|could not be preloaded/), []);
      } finally {
        await postmaster.close();
      }
    });
  }

  it("a CommonJS module that really lacks _PG_init, or a library without the function, still says so", async () => {
    const dir = project("commonjs");
    writeFileSync(join(dir, "noinit.cjs"), "exports.other = function () {};\n");
    const noInit = await runNode([CLI, "start", "./noinit.cjs", "--no-database"], { cwd: dir });
    assert.equal(noInit.code, 1);
    assert.match(noInit.stderr, /extension "\.\/noinit\.cjs" exports no _PG_init\(\) function/);

    writeFileSync(join(dir, "ext_absent.cjs"), extensionSource("cjs", "commonjs", "absent"));
    const child = spawn(process.execPath, [CLI, "start", "./ext_absent.cjs", "--no-database", "--log-format", "json"], {
      cwd: dir,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const postmaster = new RunningPostmaster(child, dir);
    try {
      await postmaster.waitForLog(/background worker "w_cjs": function "absent" not found in library "\.\/worker_cjs\.cjs"/);
    } finally {
      await postmaster.close();
    }
  });

  it("TypeScript that needs more than erasing types, the resolution TypeScript projects use, and errors that name .ts lines", async () => {
    const dir = project("module");
    mkdirSync(join(dir, "lib"));
    mkdirSync(join(dir, "shared"));
    writeFileSync(join(dir, "tsconfig.json"), '{\n  // comments, as tsconfig allows\n  "compilerOptions": { "paths": { "@shared/*": ["./shared/*"] } },\n}\n');
    // An enum, a namespace and parameter properties need a transform, not only erasure; an import of a name
    // that is only a type (without `type`) must vanish as TypeScript makes it.
    writeFileSync(join(dir, "shared", "kinds.ts"), "export enum Kind { A = 1, B }\nexport namespace Names { export const first = \"ns\"; }\nexport interface Shape { kind: Kind }\n");
    writeFileSync(join(dir, "lib", "index.ts"), "export class Box { constructor(private readonly value: number) {} get(): number { return this.value; } }\n");
    writeFileSync(
      join(dir, "rich.ts"),
      [
        'import { Kind, Names, Shape } from "@shared/kinds.js";', // tsconfig paths, `.js` naming a `.ts` file
        'import { Box } from "./lib";', // a directory's index.ts, extensionless
        "export function rich(): void {",
        "  const shape: Shape = { kind: Kind.B };",
        "  console.log(`rich ${shape.kind} ${Names.first} ${new Box(7).get()}`);",
        "}",
        "export function fails(): void {",
        '  throw new Error("from line 8");',
        "}",
        "",
      ].join("\n"),
    );
    writeFileSync(join(dir, "broken.ts"), "export function broken(): void {\n  const x: number = ;\n}\n");
    writeFileSync(
      join(dir, "ext_rich.ts"),
      [
        'import { BackgroundWorkerBuilder } from "bgworker";',
        "export function _PG_init(): void {",
        '  new BackgroundWorkerBuilder("rich").setLibrary("./rich.ts").setFunction("rich").load();',
        '  new BackgroundWorkerBuilder("fails").setLibrary("./rich.ts").setFunction("fails").load();',
        '  new BackgroundWorkerBuilder("broken").setLibrary("./broken.ts").setFunction("broken").load();',
        "}",
        "",
      ].join("\n"),
    );
    const child = spawn(process.execPath, [CLI, "start", "./ext_rich.ts", "--no-database", "--log-format", "json"], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
    const postmaster = new RunningPostmaster(child, dir);
    try {
      await postmaster.waitForLog(/^rich 2 ns 7$/);
      // The thrown error's stack names the TypeScript file and line, through the source map.
      const fails = await postmaster.waitForLog(/^background worker "fails": from line 8$/);
      assert.match(fails.detail ?? "", /rich\.ts:8:\d+/);
      // A syntax error is reported with the file and the line.
      const broken = await postmaster.waitForLog(/^background worker "broken": function "broken" not found in library "\.\/broken\.ts"$/);
      assert.match(broken.detail ?? "", /broken\.ts:2:\d+/);
    } finally {
      await postmaster.close();
    }
  });

  it("a TypeScript library loaded as compiled files: import.meta names the source, an edited module is recompiled; a computed import and JavaScript importing TypeScript still work", async () => {
    const dir = project("module");
    writeFileSync(join(dir, "value.ts"), "export const value: number = 1;\n");
    writeFileSync(join(dir, "other.ts"), "export const other = 'other';\n");
    writeFileSync(
      join(dir, "edited.ts"),
      [
        'import { value } from "./value.ts";',
        "export function edited(): void {",
        "  console.log(`value ${value} from ${import.meta.url.replace(/^.*\\//, '')} in ${import.meta.dirname === process.cwd()}`);",
        "  process.exit(1);",
        "}",
        "",
      ].join("\n"),
    );
    // A specifier computed at run time cannot be rewritten to a compiled file: this library goes through the hooks.
    writeFileSync(
      join(dir, "computed.ts"),
      'export async function computed(): Promise<void> {\n  const name = ["./other", "ts"].join(".");\n  console.log(`computed ${(await import(name)).other}`);\n}\n',
    );
    // Project JavaScript that imports TypeScript: Node alone cannot load it, so it goes through the hooks too.
    writeFileSync(join(dir, "viajs.js"), 'import { value } from "./value.ts";\nexport function viajs() { console.log(`via js ${value}`); }\n');
    writeFileSync(
      join(dir, "ext_edited.ts"),
      [
        'import { BackgroundWorkerBuilder } from "bgworker";',
        "export function _PG_init(): void {",
        '  new BackgroundWorkerBuilder("edited").setLibrary("./edited.ts").setFunction("edited").setRestartTime(1000).load();',
        '  new BackgroundWorkerBuilder("computed").setLibrary("./computed.ts").setFunction("computed").setRestartTime(null).load();',
        '  new BackgroundWorkerBuilder("viajs").setLibrary("./viajs.js").setFunction("viajs").setRestartTime(null).load();',
        "}",
        "",
      ].join("\n"),
    );
    const child = spawn(process.execPath, [CLI, "start", "./ext_edited.ts", "--no-database", "--log-format", "json"], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
    const postmaster = new RunningPostmaster(child, dir);
    try {
      await postmaster.waitForLog(/^value 1 from edited\.ts in true$/);
      await postmaster.waitForLog(/^computed other$/);
      await postmaster.waitForLog(/^via js 1$/);
      // A module the library imports is edited: a runner that loads the library afterwards runs the new source.
      writeFileSync(join(dir, "value.ts"), "export const value: number = 2;\n");
      await postmaster.waitForLog(/^value 2 from edited\.ts in true$/);
    } finally {
      await postmaster.close();
    }
  });
});
