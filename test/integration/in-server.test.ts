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
import { spawnSync } from "node:child_process";
import { chownSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { inServerSetup, installExtension, type InServerSetup } from "../helpers/in-server.js";
import { ROOT } from "../helpers/postmaster.js";

const found = inServerSetup();

describe("in-server mode (pg/t, prove)", { skip: typeof found === "string" ? found : false }, () => {
  const ready = found as InServerSetup;

  it("bgworker pg-install builds and installs the extension, and says where", () => {
    const stdout = installExtension(ready);
    assert.match(stdout, /installed the bgworker extension into PostgreSQL \d+/);
    assert.match(stdout, /bgworker\.so/);
    assert.match(stdout, /extension\/bgworker\.control/);
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
