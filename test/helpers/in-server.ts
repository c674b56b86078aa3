/**
 * In-server mode (SPEC §9) for node:test files: whether this machine can run it (`inServerSetup()`, the one
 * check, with its reasons to skip, that test/integration/in-server.test.ts, test/integration/both-modes.test.ts
 * and the bench's in-server group share), `bgworker pg-install`, and a throwaway cluster with the bgworker
 * extension preloaded. PostgreSQL refuses to run as root: as root the server runs as `postgres`.
 *
 * The bench imports this module; it imports nothing from the bench, so the tests stay independent of it.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { accessSync, constants, existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Cluster, SUPERUSER, type ServerSettings } from "../../src/database/cluster.js";
import { makeOwnedDir, processAlive } from "../../src/database/owner.js";
import { pickFreePort } from "../../src/database/ports.js";
import type { ConnectionParams } from "../../src/database/types.js";
import { CLI, processesIn, ROOT, waitGone } from "./postmaster.js";

function output(command: string, args: readonly string[]): string | null {
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

export interface RunAs {
  readonly uid: number;
  readonly gid: number;
  readonly name: string;
}

export interface InServerSetup {
  readonly pgConfig: string;
  readonly bindir: string;
  readonly pgxs: string;
  readonly pkglibdir: string;
  readonly sharedir: string;
  /** `pg_config --version` (e.g. "PostgreSQL 15.8"): the server the extension is built for. */
  readonly version: string;
  /** The user PostgreSQL runs as when this process is root; null: as this process's user. */
  readonly runAs: RunAs | null;
}

export interface InServerNeeds {
  /**
   * pg/t's TAP suite runs here (default true): prove and IPC::Run must be installed, and the server's user must
   * read pg/, where prove runs. The bench runs no TAP file and passes false.
   */
  readonly prove?: boolean;
}

/**
 * What in-server mode needs on this machine, or why it cannot run here (one line, printed as the skip reason):
 * a pg_config, the server's development headers, prove and IPC::Run (unless `needs.prove` is false), write
 * access to its pkglibdir, a built package, and, as root, a `postgres` user that can read this checkout.
 */
export function inServerSetup(needs: InServerNeeds = {}): InServerSetup | string {
  const prove = needs.prove ?? true;
  const pgConfig = ["/usr/lib/postgresql/15/bin/pg_config", "pg_config"].find((p) => output(p, ["--version"]) !== null);
  if (pgConfig === undefined) return "no pg_config (install postgresql-server-dev-NN)";
  const [version, include, pgxs, bindir, pkglibdir, sharedir] = ["--version", "--includedir-server", "--pgxs", "--bindir", "--pkglibdir", "--sharedir"].map((flag) => output(pgConfig, [flag]));
  if (version == null || include == null || pgxs == null || bindir == null || pkglibdir == null || sharedir == null || !existsSync(join(include, "postgres.h")) || !existsSync(pgxs)) {
    return "the PostgreSQL server development headers are missing (Debian: postgresql-server-dev-NN)";
  }
  if (prove) {
    if (output("prove", ["--version"]) === null) return "prove is missing (Debian: perl)";
    if (spawnSync("perl", ["-MIPC::Run", "-e", "1"]).status !== 0) return "IPC::Run is missing (Debian: libipc-run-perl)";
  }
  if (!writable(pkglibdir)) return `cannot install the extension into ${pkglibdir} (run as its owner, or root)`;
  if (!existsSync(join(ROOT, "dist", "inserver", "child.js"))) return "the package is not built (npm run build)";
  let runAs: RunAs | null = null;
  if (process.getuid?.() === 0) {
    const uid = Number(output("id", ["-u", "postgres"]));
    const gid = Number(output("id", ["-g", "postgres"]));
    if (!Number.isInteger(uid) || uid <= 0) return "running as root and there is no postgres user to run PostgreSQL";
    runAs = { uid, gid, name: "postgres" };
    // The server loads this checkout's dist/ (and a test's modules) as that user, and prove runs in its pg/:
    // every parent directory must let that user in.
    const read = [join(ROOT, "dist", "inserver", "child.js"), ...(prove ? [join(ROOT, "pg", "Makefile")] : [])];
    if (read.some((path) => spawnSync("test", ["-r", path], { uid, gid }).status !== 0)) {
      return `the postgres user cannot read this checkout (${ROOT}): a parent directory is closed to it`;
    }
  }
  return { pgConfig, bindir, pgxs, pkglibdir, sharedir, version, runAs };
}

/** `bgworker pg-install` into the server that `pg_config` names; throws with its output when it fails. */
export function installExtension(setup: InServerSetup): string {
  const result = spawnSync(process.execPath, [CLI, "pg-install", "--pg-config", setup.pgConfig], { encoding: "utf8", timeout: 300_000 });
  if (result.status !== 0) throw new Error(`bgworker pg-install failed (${result.status ?? result.signal}):\n${result.stdout}\n${result.stderr}`);
  return result.stdout;
}

export interface InServerCluster {
  readonly params: ConnectionParams;
  readonly pgdata: string;
  /** The server's log: the workers' output and PostgreSQL's lines about them. */
  readonly logFile: string;
  /**
   * Stops the server (fast: the workers get SIGTERM), SIGKILLs whatever is left of it and of its workers' Node
   * processes (their working directory is the data directory), removes the temp dir, and returns the pids that
   * had to be killed. Safe to call twice.
   */
  stop(): Promise<number[]>;
}

/** Durability off: the data is thrown away. Dynamic shared memory in files, so a kill leaves nothing in /dev/shm. */
const FAST_SETTINGS: ServerSettings = { dynamic_shared_memory_type: "mmap", fsync: false, synchronous_commit: false, full_page_writes: false };

/**
 * A fresh cluster of `setup`'s server. It starts once without the extension, so that `prepare` can make what
 * the workers need before any of them starts (a database, tables), then again with `shared_preload_libraries
 * = bgworker`, this checkout as `bgworker.package`, this Node as `bgworker.node`, and `settings` (e.g.
 * `bgworker.modules`).
 */
export async function startInServerCluster(
  setup: InServerSetup,
  settings: ServerSettings,
  prepare: (params: ConnectionParams) => Promise<void>,
): Promise<InServerCluster> {
  const dir = await mkdtemp(join(tmpdir(), "bgw-inserver-"));
  let cluster: Cluster | undefined;
  let stopped = false;
  const stop = async (): Promise<number[]> => {
    if (stopped) return [];
    stopped = true;
    const killed: number[] = [];
    try {
      await cluster?.stop("fast").catch(() => undefined);
    } finally {
      const pid = await cluster?.runningPid();
      if (pid !== null && pid !== undefined && processAlive(pid)) {
        process.kill(pid, "SIGKILL"); // never leave a server behind
        killed.push(pid);
      }
      for (const left of await waitGone(processesIn(dir))) {
        process.kill(left, "SIGKILL");
        killed.push(left);
      }
      await rm(dir, { recursive: true, force: true });
    }
    return killed;
  };
  try {
    cluster = await Cluster.at(join(dir, "pgdata"));
    if (cluster.binaries.bindir !== setup.bindir) {
      throw new Error(`the cluster would run ${cluster.binaries.bindir}, not ${setup.bindir} where the extension is installed`);
    }
    await makeOwnedDir(dir, cluster.owner); // mkdtemp makes it 0700 root's: the server's user must enter it
    await cluster.init({ noSync: true });
    const port = await pickFreePort();
    const params: ConnectionParams = { host: "127.0.0.1", port, user: SUPERUSER, database: "postgres" };
    await cluster.start({ port, settings: FAST_SETTINGS });
    await prepare(params);
    await cluster.stop("fast");
    await cluster.start({
      port,
      settings: {
        ...FAST_SETTINGS,
        shared_preload_libraries: "bgworker",
        "bgworker.package": ROOT,
        "bgworker.node": process.execPath,
        ...settings,
      },
    });
    return { params, pgdata: cluster.pgdata, logFile: cluster.logFile, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
