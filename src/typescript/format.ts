/** Which module system Node runs a file under, by Node's own rule. */
import { readFileSync } from "node:fs";
import { dirname, extname, join } from "node:path";

/**
 * Whether Node runs the file at `path` as CommonJS or as an ES module: by its extension (`.cjs`/`.cts`,
 * `.mjs`/`.mts`), else by the `type` of the nearest package.json (CommonJS when there is none, or no `type`).
 */
export function moduleFormat(path: string, packageType: (dir: string) => string | null | undefined = nearestPackageType): "commonjs" | "module" {
  const ext = extname(path);
  if (ext === ".cjs" || ext === ".cts") return "commonjs";
  if (ext === ".mjs" || ext === ".mts") return "module";
  return packageType(dirname(path)) === "module" ? "module" : "commonjs";
}

/** The `type` of the package.json nearest above `dir` ("" when it has none), or null when there is none. */
function nearestPackageType(dir: string): string | null {
  for (let current = dir; ; current = dirname(current)) {
    try {
      const type = (JSON.parse(readFileSync(join(current, "package.json"), "utf8")) as { type?: unknown }).type;
      return typeof type === "string" ? type : "";
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") return ""; // unreadable or malformed: Node's default
    }
    if (dirname(current) === current) return null;
  }
}
