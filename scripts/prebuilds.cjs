// Builds the prebuilt shared-memory addons that the package ships (`npm run prebuilds`, run by `npm pack`'s
// prepack): one per supported Node line, each compiled against that line's own headers from npm's
// node-<platform>-<arch>@<line> package (scripts/node-lines.cjs), so no headers are downloaded from
// nodejs.org and one machine builds for every line. Each lands in prebuilds/<platform>-<arch>/ as
// bgworker.abi<ABI>.<libc>.node, the name node-gyp-build looks for, stripped, and is loaded once by its own
// Node before it counts. The build runs in a temporary copy of binding.gyp and native/, so the checkout's
// own build/ is untouched.
//
//   node scripts/prebuilds.cjs            every supported line (replaces prebuilds/<platform>-<arch>/)
//   node scripts/prebuilds.cjs 26         that line only
//
// A C++ compiler, make and python3 are needed here (not where the package is installed). Linux only: the
// addon is Linux-only code (futex, prctl).
"use strict";
const { spawnSync } = require("node:child_process");
const { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync } = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { SUPPORTED_LINES, headersVersion, nodeLine } = require("./node-lines.cjs");

const ROOT = path.resolve(__dirname, "..");

/** The C library the addon links against here: node-gyp-build's libc tag. */
function libc() {
  const report = process.report?.getReport?.();
  return report?.header?.glibcVersionRuntime ? "glibc" : "musl";
}

/** npm's bundled node-gyp: the one npm names to its scripts, else the one beside the npm on PATH. */
function nodeGyp() {
  const candidates = [];
  if (process.env.npm_config_node_gyp) candidates.push(process.env.npm_config_node_gyp);
  if (process.env.npm_execpath) candidates.push(path.join(path.dirname(process.env.npm_execpath), "..", "node_modules", "node-gyp", "bin", "node-gyp.js"));
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    const npm = path.join(dir, "npm");
    if (!dir || !existsSync(npm)) continue;
    try {
      candidates.push(path.join(path.dirname(realpathSync(npm)), "..", "node_modules", "node-gyp", "bin", "node-gyp.js"));
    } catch {
      // a broken link: next
    }
  }
  try {
    candidates.push(require.resolve("node-gyp/bin/node-gyp.js"));
  } catch {
    // not installed as a package
  }
  const found = candidates.find((file) => existsSync(file));
  if (found === undefined) throw new Error("no node-gyp found (npm bundles one: run this through npm run prebuilds)");
  return found;
}

function run(file, args, options) {
  const ran = spawnSync(file, args, { stdio: "inherit", ...options });
  if (ran.status !== 0) throw new Error(`${path.basename(file)} ${args.join(" ")} failed (${ran.error?.message ?? `exit ${ran.status ?? ran.signal}`})`);
}

function main() {
  if (process.platform !== "linux") {
    console.log(`bgworker: no prebuilt addon for ${process.platform}: the shared-memory addon is Linux-only`);
    return;
  }
  const lines = process.argv.length > 2 ? process.argv.slice(2).map(Number) : SUPPORTED_LINES;
  const out = path.join(ROOT, "prebuilds", `${process.platform}-${process.arch}`);
  if (process.argv.length <= 2) rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const gyp = nodeGyp();
  const work = mkdtempSync(path.join(os.tmpdir(), "bgw-prebuild-"));
  try {
    cpSync(path.join(ROOT, "binding.gyp"), path.join(work, "binding.gyp"));
    cpSync(path.join(ROOT, "native"), path.join(work, "native"), { recursive: true });
    for (const line of lines) {
      const prefix = nodeLine(line);
      const { version, abi } = headersVersion(prefix);
      const started = Date.now();
      console.log(`bgworker: building the addon for Node ${version} (ABI ${abi}) against ${path.join(prefix, "include", "node")}`);
      // npm hands its own nodedir (npm config) to scripts; this build is for that line's headers only.
      const env = { ...process.env, npm_config_nodedir: prefix, npm_config_loglevel: "warn" };
      run(process.execPath, [gyp, "rebuild", "--release", `--nodedir=${prefix}`, "--jobs=max"], { cwd: work, env });
      const file = path.join(out, `bgworker.abi${abi}.${libc()}.node`);
      copyFileSync(path.join(work, "build", "Release", "bgworker_shm.node"), file);
      const strip = spawnSync("strip", ["--strip-all", file], { stdio: "inherit" });
      if (strip.error) console.log("bgworker: no strip on PATH: the binary keeps its symbols");
      // It must load in the Node it was built for.
      run(path.join(prefix, "bin", "node"), ["-e", `const a = require(${JSON.stringify(file)}); if (typeof a.create !== "function") process.exit(1)`], {});
      console.log(`bgworker: ${path.relative(ROOT, file)} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

try {
  main();
} catch (error) {
  console.error(`bgworker: prebuilt addons: ${error.message}`);
  process.exit(1);
}
