// Runs a build command (node-gyp-build at install: the prebuilt addon, else a build from source) with node-gyp pointed at the
// running Node's own headers when that Node ships them (`<prefix>/include/node`: Debian's nodejs, Node's
// release tarballs and installers), so that building the shared-memory addon needs no download of headers.
// A `nodedir` the user configured in npm wins. With no command, prints the directory it would use.
"use strict";
const { spawnSync } = require("node:child_process");
const { existsSync } = require("node:fs");
const path = require("node:path");

const prefix = path.resolve(path.dirname(process.execPath), "..");
const env = { ...process.env };
if (!env.npm_config_nodedir && existsSync(path.join(prefix, "include", "node", "common.gypi"))) {
  env.npm_config_nodedir = prefix;
}

const [command, ...args] = process.argv.slice(2);
if (command === undefined) {
  console.log(env.npm_config_nodedir ?? "");
  process.exit(0);
}
// A package's own bin (node-gyp-build) runs under this Node; anything else is looked up on PATH.
let file = command;
let argv = args;
try {
  const pkg = require(`${command}/package.json`);
  const bin = typeof pkg.bin === "string" ? pkg.bin : pkg.bin[command];
  file = process.execPath;
  argv = [require.resolve(`${command}/${bin}`), ...args];
} catch {
  // not a package: a plain command
}
const result = spawnSync(file, argv, { stdio: "inherit", env });
process.exit(result.status ?? 1);
