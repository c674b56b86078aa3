// Rewrites the `#private;` marker that tsc emits in declarations of classes with `#` fields into
// `private "#private";`, which keeps those classes nominal and which a project compiled for an older target
// (TypeScript's default, ES5) accepts: without it, such a project fails on bgworker's own .d.ts files.
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";

async function* declarations(dir) {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* declarations(path);
    else if (entry.name.endsWith(".d.ts")) yield path;
  }
}

for await (const file of declarations(process.argv[2] ?? "dist")) {
  const text = await readFile(file, "utf8");
  const fixed = text.replace(/^(\s*)#private;$/gm, '$1private "#private";');
  if (fixed !== text) await writeFile(file, fixed);
}
