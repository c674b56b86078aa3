/**
 * In-server mode's prerequisites and a throwaway PostgreSQL cluster with the bgworker extension preloaded.
 *
 * `inServerSetup()` answers what test/integration/in-server.test.ts's setup() checks before it installs the
 * extension: a pg_config, the server's development headers, write access to its pkglibdir, a built package,
 * and, as root, a `postgres` user that can read the checkout. It imports nothing from the bench, so the test
 * can use it too (its own extra checks, prove and IPC::Run, stay there).
 *
 * The cluster lives in a temp dir, serves a Unix socket only (listen_addresses empty) on a free port number,
 * and runs as the `postgres` user when the bench runs as root (PostgreSQL refuses root). `stop()` ends it by
 * pg_ctl, else by its postmaster's pid, and is also run if the bench is interrupted while it runs.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { accessSync, appendFileSync, chmodSync, chownSync, constants, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

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
  readonly version: string;
  /** The user PostgreSQL runs as when this process is root; null: as this process's user. */
  readonly runAs: RunAs | null;
}

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

/** What in-server mode needs on this machine, or why it cannot run here (one line). `root`: the package's directory. */
export function inServerSetup(root: string): InServerSetup | string {
  const pgConfig = ["/usr/lib/postgresql/15/bin/pg_config", "pg_config"].find((p) => output(p, ["--version"]) !== null);
  if (pgConfig === undefined) return "no pg_config (install postgresql-server-dev-NN)";
  const [version, include, pgxs, bindir, pkglibdir, sharedir] = ["--version", "--includedir-server", "--pgxs", "--bindir", "--pkglibdir", "--sharedir"].map((flag) => output(pgConfig, [flag]));
  if (version == null || include == null || pgxs == null || bindir == null || pkglibdir == null || sharedir == null || !existsSync(join(include, "postgres.h")) || !existsSync(pgxs)) {
    return "the PostgreSQL server development headers are missing (Debian: postgresql-server-dev-NN)";
  }
  if (!writable(pkglibdir)) return `cannot install the extension into ${pkglibdir} (run as its owner, or root)`;
  if (!existsSync(join(root, "dist", "inserver", "child.js"))) return "the package is not built (npm run build)";
  let runAs: RunAs | null = null;
  if (process.getuid?.() === 0) {
    const uid = Number(output("id", ["-u", "postgres"]));
    const gid = Number(output("id", ["-g", "postgres"]));
    if (!Number.isInteger(uid) || uid <= 0) return "running as root and there is no postgres user to run PostgreSQL";
    runAs = { uid, gid, name: "postgres" };
    // The server loads this checkout's dist/: every parent directory must let that user in.
    if (spawnSync("test", ["-r", join(root, "dist", "inserver", "child.js")], { uid, gid }).status !== 0) {
      return `the postgres user cannot read this checkout (${root}): a parent directory is closed to it`;
    }
  }
  return { pgConfig, bindir, pgxs, pkglibdir, sharedir, version, runAs };
}

/** A port number no one listens on at this moment (the server binds none: it names its socket file). */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export interface ClusterOptions {
  /** Lines appended to postgresql.conf. */
  readonly conf: readonly string[];
}

export class InServerCluster {
  readonly data: string;
  readonly logFile: string;
  private stopped = false;
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    this.stopSync();
    process.exit(signal === "SIGINT" ? 130 : 143);
  };

  private constructor(
    private readonly setup: InServerSetup,
    readonly dir: string,
    readonly port: number,
  ) {
    this.data = join(dir, "data");
    this.logFile = join(dir, "server.log");
  }

  /** The Unix socket's directory: the `host` of a client. */
  get socketDir(): string {
    return this.dir;
  }

  /** A connection URL for this cluster's socket, as `bgworker start --database` takes it (`?host=` overrides the URL's host). */
  url(database = "postgres"): string {
    return `postgresql://postgres@localhost/${database}?host=${encodeURIComponent(this.dir)}&port=${this.port}`;
  }

  /** Creates (initdb) and starts a cluster; resolves once it accepts connections. */
  static async start(setup: InServerSetup, options: ClusterOptions): Promise<InServerCluster> {
    const dir = mkdtempSync(join(tmpdir(), "bgw-bench-inserver-"));
    chmodSync(dir, 0o755);
    if (setup.runAs !== null) chownSync(dir, setup.runAs.uid, setup.runAs.gid);
    const cluster = new InServerCluster(setup, dir, await freePort());
    try {
      cluster.pgTool("initdb", ["-D", cluster.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
      appendFileSync(
        join(cluster.data, "postgresql.conf"),
        [`port = ${cluster.port}`, "listen_addresses = ''", `unix_socket_directories = '${dir}'`, ...options.conf].join("\n") + "\n",
      );
      process.on("SIGINT", cluster.onSignal);
      process.on("SIGTERM", cluster.onSignal);
      cluster.pgTool("pg_ctl", ["-D", cluster.data, "-l", cluster.logFile, "-w", "-t", "60", "start"]);
    } catch (error) {
      cluster.stopSync();
      throw error;
    }
    return cluster;
  }

  /** Runs one of the server's programs as the server's user; throws with its output when it fails. */
  private pgTool(program: string, args: readonly string[]): string {
    const result = spawnSync(join(this.setup.bindir, program), args, {
      cwd: this.dir,
      encoding: "utf8",
      timeout: 120_000,
      env: { ...process.env, LC_ALL: "C", HOME: this.dir },
      ...(this.setup.runAs === null ? {} : { uid: this.setup.runAs.uid, gid: this.setup.runAs.gid }),
    });
    if (result.status !== 0) {
      const log = existsSync(this.logFile) ? readFileSync(this.logFile, "utf8").split("\n").slice(-15).join("\n") : "";
      throw new Error(`bench: ${program} ${args.join(" ")} failed (${result.status ?? result.signal}): ${result.stderr}${result.stdout}\n${log}`);
    }
    return result.stdout;
  }

  /** The postmaster's pid, from postmaster.pid; undefined when it is not running. */
  postmasterPid(): number | undefined {
    try {
      const pid = Number(readFileSync(join(this.data, "postmaster.pid"), "utf8").split("\n")[0]);
      return Number.isInteger(pid) && pid > 0 && existsSync(`/proc/${pid}`) ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  /** A directory inside the cluster's temp dir that the server's user may write (reports of its workers). */
  writableDir(name: string): string {
    const path = join(this.dir, name);
    mkdirSync(path, { recursive: true, mode: 0o777 });
    chmodSync(path, 0o777);
    return path;
  }

  /** Stops the server (fast), else kills its postmaster by pid, and removes the temp dir. Safe to call twice. */
  stopSync(): void {
    if (this.stopped) return;
    this.stopped = true;
    process.off("SIGINT", this.onSignal);
    process.off("SIGTERM", this.onSignal);
    const pid = this.postmasterPid();
    if (pid !== undefined) {
      try {
        this.pgTool("pg_ctl", ["-D", this.data, "-m", "fast", "-w", "-t", "30", "stop"]);
      } catch {
        // pg_ctl could not stop it: the immediate way, by the postmaster's own pid.
        try {
          process.kill(pid, "SIGQUIT");
        } catch {
          // already gone
        }
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** The last lines of the server's log (for an error message). */
  logTail(lines = 20): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, "utf8").split("\n").slice(-lines).join("\n") : "";
  }
}

/** Installs the extension into the server pg_config names (`bgworker pg-install`); the reason it failed, else null. */
export function pgInstall(cli: string, setup: InServerSetup): string | null {
  const result = spawnSync(process.execPath, [cli, "pg-install", "--pg-config", setup.pgConfig], { encoding: "utf8", timeout: 300_000 });
  if (result.status === 0) return null;
  return `bgworker pg-install failed (exit code ${result.status ?? result.signal}): ${(result.stderr || result.stdout).trim().split("\n").slice(-3).join(" ")}`;
}
