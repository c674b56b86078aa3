/**
 * In-server mode (SPEC §9): builds and installs the bgworker extension (`bgworker pg-install`) and runs its TAP
 * suite (pg/t: PostgreSQL's worker_spi test against the TypeScript worker_spi, signals, exits, transactions,
 * the server's death, the postmaster as PID 1) with `prove` and PostgreSQL::Test::Cluster. Skipped, saying why, where the server's
 * development headers, prove or IPC::Run are missing, or where the extension cannot be installed.
 *
 * PostgreSQL refuses to run as root: as root, the suite runs as the `postgres` user in a temp dir it owns
 * (this repository must be readable by that user, as it is for the server that loads it).
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { accessSync, chownSync, constants, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { CLI, ROOT } from "../helpers/postmaster.js";

function output(command: string, args: string[]): string | null {
  try {
    return execFileSync(command, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 10_000 }).trim();
  } catch {
    return null;
  }
}

function writable(path: string): boolean {
  try {
    accessSync(path, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

interface Setup {
  readonly pgConfig: string;
  readonly bindir: string;
  readonly pgxs: string;
  readonly runAs: { uid: number; gid: number; name: string } | null;
}

/** What the suite needs, or why it is skipped. */
function setup(): Setup | string {
  const pgConfig = ["/usr/lib/postgresql/15/bin/pg_config", "pg_config"].find((p) => output(p, ["--version"]) !== null);
  if (pgConfig === undefined) return "no pg_config (install postgresql-server-dev-NN)";
  const include = output(pgConfig, ["--includedir-server"]);
  const pgxs = output(pgConfig, ["--pgxs"]);
  const bindir = output(pgConfig, ["--bindir"]);
  const pkglibdir = output(pgConfig, ["--pkglibdir"]);
  if (include === null || pgxs === null || bindir === null || pkglibdir === null || !existsSync(join(include, "postgres.h")) || !existsSync(pgxs)) {
    return "the PostgreSQL server development headers are missing (Debian: postgresql-server-dev-NN)";
  }
  if (output("prove", ["--version"]) === null) return "prove is missing (Debian: perl)";
  if (spawnSync("perl", ["-MIPC::Run", "-e", "1"]).status !== 0) return "IPC::Run is missing (Debian: libipc-run-perl)";
  if (!writable(pkglibdir)) return `cannot install the extension into ${pkglibdir} (run as its owner, or root)`;
  if (!existsSync(join(ROOT, "dist", "inserver", "child.js"))) return "the package is not built (npm run build)";
  let runAs: Setup["runAs"] = null;
  if (process.getuid?.() === 0) {
    const uid = Number(output("id", ["-u", "postgres"]));
    const gid = Number(output("id", ["-g", "postgres"]));
    if (!Number.isInteger(uid) || uid <= 0) return "running as root and there is no postgres user to run PostgreSQL";
    runAs = { uid, gid, name: "postgres" };
    // The server loads this checkout's dist/ and runs prove in its pg/ as that user: every parent must let it in.
    if (spawnSync("test", ["-r", join(ROOT, "pg", "Makefile")], { uid, gid }).status !== 0) {
      return `the postgres user cannot read this checkout (${ROOT}): a parent directory is closed to it`;
    }
  }
  return { pgConfig, bindir, pgxs, runAs };
}

const found = setup();

describe("in-server mode (pg/t, prove)", { skip: typeof found === "string" ? found : false }, () => {
  const ready = found as Setup;

  it("bgworker pg-install builds and installs the extension, and says where", () => {
    const result = spawnSync(process.execPath, [CLI, "pg-install", "--pg-config", ready.pgConfig], { encoding: "utf8", timeout: 300_000 });
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /installed the bgworker extension into PostgreSQL \d+/);
    assert.match(result.stdout, /bgworker\.so/);
    assert.match(result.stdout, /extension\/bgworker\.control/);
  });

  it("passes the TAP suite: PostgreSQL's worker_spi test and SPEC §9's signals, exits and transactions", { timeout: 900_000 }, () => {
    // Kept when the suite fails: the cluster logs are in its tmp_check/log.
    const testDir = mkdtempSync(join(tmpdir(), "bgworker-tap-"));
    {
      if (ready.runAs !== null) chownSync(testDir, ready.runAs.uid, ready.runAs.gid);
      const perlLib = join(dirname(dirname(ready.pgxs)), "test", "perl");
      const env = {
        ...process.env,
        TESTDIR: testDir,
        PATH: `${ready.bindir}:${dirname(process.execPath)}:${process.env["PATH"] ?? ""}`,
        PG_REGRESS: join(dirname(dirname(ready.pgxs)), "test", "regress", "pg_regress"),
        PG_TEST_TIMEOUT_DEFAULT: "60",
        BGWORKER_NODE: process.execPath,
        BGWORKER_PACKAGE_DIR: ROOT,
        HOME: testDir,
      };
      // Every numbered test file of pg/t, in order.
      const files = readdirSync(join(ROOT, "pg", "t")).filter((f) => /^\d{3}_.*\.pl$/.test(f)).sort().map((f) => `t/${f}`);
      const result = spawnSync("prove", ["-I", perlLib, "-I", "t", ...files], {
        cwd: join(ROOT, "pg"),
        env,
        encoding: "utf8",
        timeout: 900_000,
        ...(ready.runAs === null ? {} : { uid: ready.runAs.uid, gid: ready.runAs.gid }),
      });
      assert.equal(result.status, 0, `prove failed:\n${result.stdout}\n${result.stderr}\n(logs in ${testDir}/tmp_check/log)`);
      assert.match(result.stdout, /All tests successful/);
      rmSync(testDir, { recursive: true, force: true });
    }
  });
});
