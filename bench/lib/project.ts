/**
 * A user's project in a temp dir, outside this package: `package.json` ("type": "module"), bgworker
 * installed as `node_modules/bgworker` (a link to this repository, whose `dist/` is the built package), and
 * worker libraries and extensions written there, `.ts` and `.js`.
 */
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const CLI = join(REPO, "dist", "cli", "main.js");
/** The shared-memory addon as the package loads it (node-gyp-build: a local build, else the prebuilt binary). */
export const ADDON = (createRequire(import.meta.url)("node-gyp-build") as { path(dir: string): string }).path(REPO);

export type Bgworker = typeof import("bgworker");

/** The built package, as `import "bgworker"` gives it to a user (never src/ through tsconfig paths). */
export async function builtPackage(): Promise<Bgworker> {
  return (await import(pathToFileURL(join(REPO, "dist", "index.js")).href)) as Bgworker;
}

export class Project {
  readonly dir = mkdtempSync(join(tmpdir(), "bgw-bench-"));
  readonly reports = join(this.dir, "r");

  constructor() {
    writeFileSync(join(this.dir, "package.json"), JSON.stringify({ name: "bench-project", private: true, type: "module" }) + "\n");
    mkdirSync(join(this.dir, "node_modules"));
    symlinkSync(REPO, join(this.dir, "node_modules", "bgworker"), "dir");
    mkdirSync(this.reports);
  }

  write(name: string, source: string): string {
    const path = join(this.dir, name);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, source);
    return path;
  }

  /** A fresh report file path (short enough for `setExtra`, 128 bytes). */
  private next = 0;
  reportFile(): string {
    return join(this.reports, `${(this.next++).toString(36)}`);
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The lines of a report file written by a worker or peer (`appendFileSync` lines), [] while absent. */
export function reportLines(path: string): string[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, "utf8").split("\n").filter((line) => line.length > 0);
}

export function appendLine(path: string, line: string): void {
  appendFileSync(path, line + "\n");
}
