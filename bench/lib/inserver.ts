/**
 * A throwaway PostgreSQL cluster with the bgworker extension preloaded, and `bgworker pg-install`. Whether
 * in-server mode can run here at all, and why not, is the tests' check (test/helpers/in-server.ts's
 * `inServerSetup()`, without its prove and IPC::Run: the bench runs no TAP file), so both skip for the same
 * reasons in the same words.
 *
 * The cluster lives in a temp dir, serves a Unix socket only (listen_addresses empty) on a free port number,
 * and runs as the `postgres` user when the bench runs as root (PostgreSQL refuses root). `stop()` ends it by
 * pg_ctl, else by its postmaster's pid, and is also run if the bench is interrupted while it runs.
 */
import { spawnSync } from "node:child_process";
import { appendFileSync, chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { InServerSetup } from "../../test/helpers/in-server.js";

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
