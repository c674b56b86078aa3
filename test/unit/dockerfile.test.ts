/**
 * The Docker example, linted (no Docker engine is needed): instructions parse, the base image comes first and
 * is pinned, nothing is fetched from URLs, the server's user exists, and the container's command runs bgworker
 * directly (so `docker stop` reaches the postmaster) with a fast-shutdown stop signal.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";

const EXAMPLE = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "examples", "docker");
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

describe("examples/docker/Dockerfile", () => {
  const instructions = parse(readFileSync(join(EXAMPLE, "Dockerfile"), "utf8"));
  const all = (keyword: string): Instruction[] => instructions.filter((i) => i.keyword === keyword);

  test("every instruction is a Dockerfile instruction, and FROM comes first with a pinned Node 20 image", () => {
    for (const instruction of instructions) assert.ok(KNOWN.has(instruction.keyword), `line ${instruction.line}: ${instruction.keyword}`);
    const first = instructions.find((i) => i.keyword !== "ARG");
    assert.equal(first?.keyword, "FROM");
    assert.match(first!.args, /^node:20[\w.-]*$/, "a pinned Node 20 tag (the ABI of the prebuilt addon), never latest");
  });

  test("nothing is fetched from a URL; copied files exist in the build context", () => {
    assert.deepEqual(all("ADD"), [], "ADD (which fetches URLs) is not used");
    for (const copy of all("COPY")) {
      const sources = copy.args.split(/\s+/).slice(0, -1).filter((s) => !s.startsWith("--"));
      for (const source of sources) assert.ok(existsSync(join(EXAMPLE, source)), `line ${copy.line}: ${source} is missing`);
    }
    for (const run of all("RUN")) assert.doesNotMatch(run.args, /\b(curl|wget)\b|https?:\/\//, `line ${run.line} fetches from outside npm`);
  });

  test("the postgres user exists for the server, and the dependencies are installed", () => {
    assert.ok(all("RUN").some((r) => /\buseradd\b.*\bpostgres$/.test(r.args)), "a RUN creates the postgres user");
    assert.ok(all("RUN").some((r) => /\bnpm (ci|install)\b/.test(r.args)));
  });

  test("CMD runs bgworker itself, in exec form, and docker stop is a fast shutdown", () => {
    const cmd = all("CMD");
    assert.equal(cmd.length, 1);
    const argv = JSON.parse(cmd[0]!.args) as unknown;
    assert.ok(Array.isArray(argv) && argv.every((a) => typeof a === "string"), "exec form: signals reach the postmaster, not a shell");
    assert.match(String(argv[0]), /(^|\/)bgworker$/);
    assert.equal(argv[1], "start");
    assert.ok(existsSync(join(EXAMPLE, String(argv[2]))), `the extension ${String(argv[2])} is in the example`);
    assert.deepEqual(all("STOPSIGNAL").map((s) => s.args), ["SIGINT"]);
  });

  test("the example's package depends on bgworker", () => {
    const manifest = JSON.parse(readFileSync(join(EXAMPLE, "package.json"), "utf8")) as { dependencies?: Record<string, string> };
    assert.ok(manifest.dependencies?.["bgworker"] !== undefined);
  });
});
