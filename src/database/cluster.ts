/**
 * One PostgreSQL cluster on disk, driven with the server's own tools: `initdb`, `pg_ctl start -w`,
 * `pg_ctl stop`. Used by the managed database and by the test helpers; it knows nothing of phases.
 */
import { chown, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { makeError } from "../errors.js";
import { findPostgresBinaries, type PgBinaries } from "./binaries.js";
import { reachableBindir } from "./npm-binaries.js";
import { blockingDirectory, makeOwnedDir, processAlive, runAs, serverOwner, type ServerOwner } from "./owner.js";

/** The bootstrap superuser of clusters that bgworker creates. */
export const SUPERUSER = "postgres";

/** Where the server's own log goes, inside the data directory. */
export const SERVER_LOG = "bgworker-server.log";

/** A unix socket path is limited to 107 bytes; `/.s.PGSQL.65535.lock` takes 20 of them. */
const MAX_SOCKET_DIR = 107 - 21;

/** `postmaster.pid`, as the server writes it (see PostgreSQL's `pidfile.h`). */
export interface PidFile {
  readonly pid: number;
  readonly port: number | null;
  readonly socketDir: string | null;
  /** `starting`, `stopping`, `ready` or `standby` (empty on old servers). */
  readonly status: string;
}

export type ServerSettings = Readonly<Record<string, string | number | boolean>>;

export interface InitOptions {
  /** `initdb --no-sync`: for throwaway clusters, where durability of the initial files does not matter. */
  readonly noSync?: boolean;
}

export interface StartOptions {
  readonly port: number;
  /** Extra `-c name=value` settings, e.g. `fsync: false` for tests. */
  readonly settings?: ServerSettings;
  readonly timeoutSeconds?: number;
}

export class Cluster {
  readonly pgdata: string;
  private socketTemp: string | null = null;

  private constructor(
    pgdata: string,
    readonly binaries: PgBinaries,
    readonly owner: ServerOwner,
  ) {
    this.pgdata = resolve(pgdata);
  }

  /** Finds the binaries and the owner (rejecting with one clear line when either is missing). */
  static async at(pgdata: string): Promise<Cluster> {
    const owner = serverOwner();
    const found = await findPostgresBinaries();
    // npm's binaries live in node_modules, which root's project may keep where the server's user cannot go.
    const binaries = found.kind === "npm" ? { ...found, bindir: await reachableBindir(found.bindir, owner) } : found;
    return new Cluster(pgdata, binaries, owner);
  }

  /**
   * Throws one line naming the directory that keeps the server's OS user from the data directory, and the ways
   * out; checked before every initdb and start, so the reason is given on every run, not only the first.
   */
  assertReachable(): void {
    const blocked = blockingDirectory(this.pgdata, this.owner);
    if (blocked !== null) throw makeError(Error, "ERR_BGWORKER_PGDATA_UNREACHABLE", unreachableMessage(this.pgdata, blocked, this.owner.name));
  }

  program(name: string): string {
    return join(this.binaries.bindir, name);
  }

  get logFile(): string {
    return join(this.pgdata, SERVER_LOG);
  }

  /** Whether the directory holds a cluster (initdb writes PG_VERSION). */
  async exists(): Promise<boolean> {
    return (await this.majorVersionOnDisk()) !== null;
  }

  async majorVersionOnDisk(): Promise<string | null> {
    try {
      return (await readFile(join(this.pgdata, "PG_VERSION"), "utf8")).trim();
    } catch {
      return null;
    }
  }

  /** Runs initdb: superuser `postgres`, trust authentication on local sockets and loopback TCP, UTF8. */
  async init(options: InitOptions = {}): Promise<void> {
    let entries: string[] = [];
    try {
      entries = await readdir(this.pgdata);
    } catch {
      // missing: created below
    }
    if (entries.length > 0) {
      throw makeError(
        Error,
        "ERR_BGWORKER_PGDATA_INVALID",
        `database.pgdata: ${this.pgdata} is not empty and holds no PostgreSQL cluster (no PG_VERSION file)`,
      );
    }
    this.assertReachable();
    await makeOwnedDir(this.pgdata, this.owner);
    const args = ["-D", this.pgdata, "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C"];
    if (options.noSync === true) args.push("--no-sync");
    try {
      await runAs(this.owner, this.program("initdb"), args);
    } catch (error) {
      throw makeError(Error, "ERR_BGWORKER_DATABASE_START", `${(error as Error).message}${this.reachHint(error)}`);
    }
  }

  /** The server's pid file, or null when there is none or it is unreadable. */
  async pidFile(): Promise<PidFile | null> {
    let text: string;
    try {
      text = await readFile(join(this.pgdata, "postmaster.pid"), "utf8");
    } catch {
      return null;
    }
    return parsePidFile(text);
  }

  /** The pid of a live postmaster on this directory, or null (a stale pid file does not count). */
  async runningPid(): Promise<number | null> {
    const file = await this.pidFile();
    return file !== null && processAlive(file.pid) ? file.pid : null;
  }

  /** The port saved in `postgresql.auto.conf` by an earlier run, if any. */
  async savedPort(): Promise<number | null> {
    try {
      return parseAutoConfPort(await readFile(join(this.pgdata, "postgresql.auto.conf"), "utf8"));
    } catch {
      return null;
    }
  }

  /** Saves the port in `postgresql.auto.conf`, so the next run (or a manual `pg_ctl start`) uses the same one. */
  async savePort(port: number): Promise<void> {
    const file = join(this.pgdata, "postgresql.auto.conf");
    let text = "";
    try {
      text = await readFile(file, "utf8");
    } catch {
      // written below; the server reads the file as its owner, and a new file would be root's
    }
    await writeFile(file, setAutoConfPort(text, port));
    if (this.owner.uid !== undefined && this.owner.gid !== undefined) {
      await chown(file, this.owner.uid, this.owner.gid);
    }
  }

  /**
   * `pg_ctl start -w`: listens on 127.0.0.1 only, unix socket in the data directory (or a private temp
   * directory when that path is too long for a socket), log in `bgworker-server.log`. Resolves once the
   * server accepts connections (or, for a standby without hot standby, has started recovery).
   */
  async start(options: StartOptions): Promise<void> {
    this.assertReachable();
    const socketDir = await this.socketDir();
    const settings: ServerSettings = {
      listen_addresses: "127.0.0.1",
      port: options.port,
      unix_socket_directories: socketDir,
      ...options.settings,
    };
    const serverArgs = Object.entries(settings)
      .map(([name, value]) => `-c ${name}=${shellQuote(String(value))}`)
      .join(" ");
    const timeout = options.timeoutSeconds ?? 60;
    try {
      await runAs(
        this.owner,
        this.program("pg_ctl"),
        ["start", "-w", "-t", String(timeout), "-D", this.pgdata, "-l", this.logFile, "-o", serverArgs],
        { timeoutMs: (timeout + 10) * 1000 },
      );
    } catch (error) {
      const reason = (await this.lastLogError()) ?? (error as Error).message;
      await this.dropSocketTemp();
      throw makeError(Error, "ERR_BGWORKER_DATABASE_START", `PostgreSQL in ${this.pgdata} did not start: ${reason} (server log: ${this.logFile})`);
    }
  }

  /** `pg_ctl stop -m MODE -w`; does nothing when no server runs. */
  async stop(mode: "smart" | "fast" | "immediate" = "fast"): Promise<void> {
    if ((await this.runningPid()) !== null) {
      await runAs(this.owner, this.program("pg_ctl"), ["stop", "-w", "-t", "60", "-m", mode, "-D", this.pgdata], {
        timeoutMs: 70_000,
      });
    }
    await this.dropSocketTemp();
  }

  /** `pg_ctl promote -w`: a standby leaves recovery and accepts writes. */
  async promote(): Promise<void> {
    await runAs(this.owner, this.program("pg_ctl"), ["promote", "-w", "-t", "60", "-D", this.pgdata], { timeoutMs: 70_000 });
  }

  /** The last ERROR/FATAL/PANIC line of the server log: why a start failed. */
  async lastLogError(): Promise<string | null> {
    try {
      const lines = (await readFile(this.logFile, "utf8")).split("\n");
      const line = lines.reverse().find((l) => /\b(FATAL|PANIC|ERROR):/.test(l));
      return line?.replace(/^.*?\b(FATAL|PANIC|ERROR):\s*/, "").trim() ?? null;
    } catch {
      return null;
    }
  }

  private async socketDir(): Promise<string> {
    if (Buffer.byteLength(this.pgdata) <= MAX_SOCKET_DIR) return this.pgdata;
    this.socketTemp ??= await mkdtemp(join(tmpdir(), "bgw-sock-"));
    await makeOwnedDir(this.socketTemp, this.owner);
    return this.socketTemp;
  }

  private async dropSocketTemp(): Promise<void> {
    if (this.socketTemp === null) return;
    await rm(this.socketTemp, { recursive: true, force: true });
    this.socketTemp = null;
  }

  private reachHint(error: unknown): string {
    if (this.owner.uid === undefined || !/permission denied|could not (change|access)/i.test(String(error))) return "";
    return ` (the "${this.owner.name}" OS user must be able to reach ${this.pgdata})`;
  }
}

/** Why the server's OS user cannot reach `pgdata`, and what to do: one line. */
export function unreachableMessage(pgdata: string, blocked: string, user: string): string {
  return (
    `database.pgdata: the "${user}" OS user, which runs the server as PostgreSQL refuses root, cannot pass through ` +
    `${blocked}, so it cannot reach ${pgdata}: let it through (chmod o+x ${blocked}), keep the cluster where it ` +
    `can (--pgdata DIR), run bgworker as an ordinary user, or serve an existing server with --database URL`
  );
}

/** Parses `postmaster.pid`: pid, data dir, start time, port, socket dir, listen address, shmem key, status. */
export function parsePidFile(text: string): PidFile | null {
  const lines = text.split("\n");
  const pid = Number(lines[0]);
  if (!Number.isInteger(pid) || pid <= 0) return null;
  const port = Number(lines[3]);
  return {
    pid,
    port: Number.isInteger(port) && port > 0 ? port : null,
    socketDir: lines[4]?.trim() || null,
    status: lines[7]?.trim() ?? "",
  };
}

/** The `port` setting of a `postgresql.auto.conf` text, or null. */
export function parseAutoConfPort(text: string): number | null {
  let port: number | null = null;
  for (const line of text.split("\n")) {
    const match = /^\s*port\s*=\s*'?(\d+)'?\s*(#.*)?$/.exec(line);
    if (match?.[1] !== undefined) port = Number(match[1]); // the last one wins, as in the server
  }
  return port;
}

/** `text` with its `port` setting replaced (or appended) by `port`. */
export function setAutoConfPort(text: string, port: number): string {
  const kept = text.split("\n").filter((line) => !/^\s*port\s*=/.test(line));
  while (kept.length > 0 && kept[kept.length - 1] === "") kept.pop();
  if (kept.length === 0) kept.push("# Do not edit this file manually!", "# It will be overwritten by the ALTER SYSTEM command.");
  kept.push(`port = '${port}'`);
  return kept.join("\n") + "\n";
}

/** pg_ctl hands `-o` to /bin/sh, so every value is single-quoted. */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}
