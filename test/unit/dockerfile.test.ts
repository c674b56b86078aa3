/**
 * The Docker example, linted (no Docker engine is needed): instructions parse, every image is a pinned Node 20
 * one, nothing is fetched from URLs, every file copied is in the build context (the repository root, less
 * what Dockerfile.dockerignore leaves out), bgworker comes from this repository (packed in the first stage,
 * a `file:` dependency of the example) and never from the registry, the server's user exists, and the
 * container's command runs bgworker directly (so `docker stop` reaches the postmaster) with a fast-shutdown
 * stop signal. The documented build commands use that context.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const EXAMPLE = join(ROOT, "examples", "docker");
/** The build context: `docker build -f examples/docker/Dockerfile .` at the repository root. */
const CONTEXT = ROOT;
const KNOWN = new Set(["FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"]);

interface Instruction {
  readonly keyword: string;
  readonly args: string;
  readonly line: number;
}

/** Dockerfile syntax: comments, blank lines, backslash continuations, `KEYWORD args`. */
function parse(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending = "";
  let start = 0;
  text.split("\n").forEach((raw, index) => {
    const line = raw.trim();
    if (pending === "" && (line === "" || line.startsWith("#"))) return;
    if (pending === "") start = index + 1;
    pending += line.endsWith("\\") ? `${line.slice(0, -1)} ` : line;
    if (line.endsWith("\\")) return;
    const match = /^([A-Za-z]+)\s+(.*)$/.exec(pending);
    assert.ok(match !== null, `line ${start}: not an instruction: ${pending}`);
    out.push({ keyword: match[1]!.toUpperCase(), args: match[2]!.trim(), line: start });
    pending = "";
  });
  assert.equal(pending, "", "a continuation runs past the end of the file");
  return out;
}

/** A `.dockerignore` pattern as a test on a context path (Go's filepath.Match, with `**` for any directories). */
function ignoredBy(patterns: readonly string[], file: string): boolean {
  const parts = file.split("/");
  return patterns.some((pattern) => {
    const source = pattern
      .replace(/^\/+|\/+$/g, "")
      .split("/")
      .map((part) => (part === "**" ? "(?:.*)" : part.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[^/]*").replace(/\?/g, "[^/]")))
      .join("/")
      .replace(/\(\?:\.\*\)\//g, "(?:.*/)?");
    const regex = new RegExp(`^${source}$`);
    // A pattern that matches a directory leaves out everything under it.
    return parts.some((_, index) => regex.test(parts.slice(0, index + 1).join("/")));
  });
}

interface Stage {
  readonly name: string | undefined;
  readonly image: string;
  readonly instructions: Instruction[];
}

function stagesOf(instructions: readonly Instruction[]): Stage[] {
  const stages: Stage[] = [];
  for (const instruction of instructions) {
    if (instruction.keyword === "FROM") {
      const [image, as, name] = instruction.args.split(/\s+/);
      assert.ok(as === undefined || (as.toUpperCase() === "AS" && name !== undefined), `line ${instruction.line}: FROM IMAGE [AS NAME]`);
      stages.push({ name, image: image!, instructions: [] });
    } else if (instruction.keyword !== "ARG" || stages.length > 0) {
      assert.ok(stages.length > 0, `line ${instruction.line}: ${instruction.keyword} before FROM`);
      stages.at(-1)!.instructions.push(instruction);
    }
  }
  return stages;
}

/** COPY's options, sources and destination (shell form; no JSON form here). */
function copyOf(copy: Instruction): { from: string | undefined; sources: string[]; destination: string } {
  const words = copy.args.split(/\s+/);
  const options = words.filter((w) => w.startsWith("--"));
  const rest = words.filter((w) => !w.startsWith("--"));
  const from = options.find((o) => o.startsWith("--from="))?.slice("--from=".length);
  return { from, sources: rest.slice(0, -1), destination: rest.at(-1)! };
}

describe("examples/docker/Dockerfile", () => {
  const instructions = parse(readFileSync(join(EXAMPLE, "Dockerfile"), "utf8"));
  const all = (keyword: string): Instruction[] => instructions.filter((i) => i.keyword === keyword);
  const stages = stagesOf(instructions);
  const final = stages.at(-1)!;
  const ignore = readFileSync(join(EXAMPLE, "Dockerfile.dockerignore"), "utf8")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"));

  test("every instruction is a Dockerfile instruction, FROM comes first, and every image is a pinned supported Node line", () => {
    for (const instruction of instructions) assert.ok(KNOWN.has(instruction.keyword), `line ${instruction.line}: ${instruction.keyword}`);
    const first = instructions.find((i) => i.keyword !== "ARG");
    assert.equal(first?.keyword, "FROM");
    for (const stage of stages) {
      assert.match(stage.image, /^node:(?:20|22|24|26)(?:-[\w.-]*)?$/, "a pinned tag of a supported Node line (one with a prebuilt addon), never latest");
    }
    assert.match(final.image, /-slim$/, "the image that runs is a slim one");
  });

  test("nothing is fetched from a URL; every file copied is in the build context, not left out by the ignore file", () => {
    assert.deepEqual(all("ADD"), [], "ADD (which fetches URLs) is not used");
    assert.ok(!ignore.some((p) => p.startsWith("!")), "no exceptions in Dockerfile.dockerignore (this test does not read them)");
    const names = new Set(stages.map((stage) => stage.name));
    for (const copy of all("COPY")) {
      const { from, sources } = copyOf(copy);
      if (from !== undefined) {
        assert.ok(names.has(from), `line ${copy.line}: --from=${from} is a stage of this file`);
        continue;
      }
      for (const source of sources) {
        const file = source.replace(/^\.\//, "").replace(/\/$/, "");
        assert.ok(existsSync(join(CONTEXT, file)), `line ${copy.line}: ${source} is not in the build context (the repository root)`);
        assert.ok(!ignoredBy(ignore, file), `line ${copy.line}: ${source} is left out by Dockerfile.dockerignore`);
      }
    }
    for (const run of all("RUN")) assert.doesNotMatch(run.args, /\b(curl|wget)\b|https?:\/\//, `line ${run.line} fetches from outside npm`);
  });

  test("the ignore file leaves out what the context must not carry", () => {
    for (const file of ["node_modules/x/index.js", "examples/docker/node_modules/x", ".bgworker/pgdata/PG_VERSION", ".git/HEAD", "bgworker-0.1.0.tgz"]) {
      assert.ok(ignoredBy(ignore, file), file);
    }
    for (const file of ["src/index.ts", "package-lock.json", "examples/docker/worker.ts"]) assert.ok(!ignoredBy(ignore, file), file);
  });

  test("the postgres user exists for the server, and the dependencies are installed", () => {
    assert.ok(final.instructions.some((r) => r.keyword === "RUN" && /\buseradd\b.*\bpostgres$/.test(r.args)), "a RUN creates the postgres user");
    assert.ok(final.instructions.some((r) => r.keyword === "RUN" && /\bnpm (ci|install)\b/.test(r.args)));
  });

  test("CMD runs bgworker itself, in exec form, and docker stop is a fast shutdown", () => {
    const cmd = all("CMD");
    assert.equal(cmd.length, 1);
    const argv = JSON.parse(cmd[0]!.args) as unknown;
    assert.ok(Array.isArray(argv) && argv.every((a) => typeof a === "string"), "exec form: signals reach the postmaster, not a shell");
    assert.match(String(argv[0]), /(^|\/)bgworker$/);
    assert.equal(argv[1], "start");
    const extension = String(argv[2]).replace(/^\.\//, "");
    assert.ok(existsSync(join(EXAMPLE, extension)), `the extension ${String(argv[2])} is in the example`);
    const copied = final.instructions.filter((i) => i.keyword === "COPY").flatMap((i) => copyOf(i).sources);
    assert.ok(copied.includes(`examples/docker/${extension}`), `the extension ${extension} is copied into the image`);
    assert.deepEqual(all("STOPSIGNAL").map((s) => s.args), ["SIGINT"]);
  });

  test("bgworker comes from this repository: a file: dependency on the tarball the first stage packs, never the registry", () => {
    const manifest = JSON.parse(readFileSync(join(EXAMPLE, "package.json"), "utf8")) as { dependencies?: Record<string, string> };
    const spec = manifest.dependencies?.["bgworker"];
    assert.ok(spec !== undefined, "the example depends on bgworker");
    assert.match(spec, /^file:/, `"bgworker": "${spec}" would be fetched from the npm registry, where bgworker is not published`);
    const tarball = spec.slice("file:".length).replace(/^\.\//, "");
    assert.ok(!tarball.includes("/"), "the tarball sits next to the example's package.json");
    // The final stage copies it from a stage that packs it, before installing.
    const copyIndex = final.instructions.findIndex((i) => {
      if (i.keyword !== "COPY") return false;
      const { from, sources, destination } = copyOf(i);
      return from !== undefined && sources.some((source) => source.endsWith(`/${tarball}`)) && (destination === "./" || destination === `./${tarball}`);
    });
    assert.ok(copyIndex !== -1, `a COPY --from=STAGE puts ${tarball} in the working directory`);
    const installIndex = final.instructions.findIndex((i) => i.keyword === "RUN" && /\bnpm (ci|install)\b/.test(i.args));
    assert.ok(copyIndex < installIndex, `${tarball} is there before npm installs`);
    const from = copyOf(final.instructions[copyIndex]!).from;
    const packer = stages.find((stage) => stage.name === from);
    assert.ok(
      packer?.instructions.some((i) => i.keyword === "RUN" && /\bnpm pack\b/.test(i.args) && i.args.includes(tarball)),
      `stage ${String(from)} makes ${tarball} with npm pack`,
    );
  });

  test("the documented build commands build from the repository root with this Dockerfile", () => {
    const documents = [join(ROOT, "docs", "operations.md"), join(ROOT, "README.md"), join(EXAMPLE, "Dockerfile")];
    let commands = 0;
    for (const document of documents) {
      for (const line of readFileSync(document, "utf8").split("\n")) {
        const command = /docker build\b[^`&;]*/.exec(line)?.[0];
        if (command === undefined) continue;
        commands += 1;
        assert.match(command.trim(), /^docker build -f examples\/docker\/Dockerfile( -t \S+)? \.$/, `${document}: ${line.trim()}`);
      }
    }
    assert.ok(commands >= 3, "the Dockerfile, README.md and docs/operations.md say how to build it");
  });
});
