/**
 * Who runs the server. PostgreSQL refuses to run as root, so when this process is root the server programs run
 * as the `postgres` OS user (spawn's uid/gid) and the data directory belongs to that user.
 */
import { execFile } from "node:child_process";
import { readFileSync, statSync } from "node:fs";
import { chown, mkdir } from "node:fs/promises";
import { dirname, join, resolve, sep } from "node:path";
import { makeError } from "../errors.js";

export interface ServerOwner {
  /** Set only when running as root: the identity the programs are spawned with. */
  readonly uid?: number;
  readonly gid?: number;
  readonly name: string;
  readonly home?: string;
}

/** The OS user that owns managed clusters. */
export function serverOwner(): ServerOwner {
  if (process.getuid?.() !== 0) return { name: process.env["USER"] ?? "current user" };
  const entry = passwdEntry("postgres");
  if (entry === null) {
    throw makeError(
      Error,
      "ERR_BGWORKER_NO_SERVER_USER",
      'running as root, but there is no "postgres" OS user to run the server as (PostgreSQL refuses root): ' +
        "create it (useradd --system postgres) or run as an ordinary user",
    );
  }
  return entry;
}

/** Parses /etc/passwd, since Node has no getpwnam. */
export function passwdEntry(name: string, passwd?: string): (ServerOwner & { uid: number; gid: number }) | null {
  let text = passwd;
  if (text === undefined) {
    try {
      text = readFileSync("/etc/passwd", "utf8");
    } catch {
      return null;
    }
  }
  for (const line of text.split("\n")) {
    const fields = line.split(":");
    if (fields[0] === name && fields.length >= 7) {
      return { name, uid: Number(fields[2]), gid: Number(fields[3]), home: fields[5] ?? "/" };
    }
  }
  return null;
}

/**
 * Creates `dir` with mode 0700 (as initdb demands) and gives it to the owner. Missing parents get the default
 * mode, not 0700: the server's user must be able to pass through them.
 */
export async function makeOwnedDir(dir: string, owner: ServerOwner): Promise<void> {
  await mkdir(dirname(dir), { recursive: true });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (owner.uid !== undefined && owner.gid !== undefined) await chown(dir, owner.uid, owner.gid);
}

/** Runs a server program as the owner; resolves with stdout, rejects with one line that ends with its last error line. */
export function runAs(
  owner: ServerOwner,
  program: string,
  args: readonly string[],
  options: { timeoutMs?: number; cwd?: string } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      program,
      args,
      {
        ...(owner.uid === undefined ? {} : { uid: owner.uid, gid: owner.gid }),
        // The owner's HOME, not root's: some programs read ~/.pgpass or write history there.
        env: { ...process.env, ...(owner.home === undefined ? {} : { HOME: owner.home }), LC_ALL: "C" },
        cwd: options.cwd ?? "/",
        timeout: options.timeoutMs ?? 120_000,
        maxBuffer: 16 * 1024 * 1024,
      },
      (error, stdout, stderr) => {
        if (error === null) {
          resolve(stdout);
          return;
        }
        const lines = `${stderr}\n${stdout}`.split("\n").map((l) => l.trim()).filter((l) => l !== "");
        const last = lines.filter((l) => /error|fatal|could not|failed|denied/i.test(l)).pop() ?? lines.pop();
        reject(makeError(Error, "ERR_BGWORKER_SERVER_PROGRAM", `${program.split("/").pop() ?? program} ${args[0] ?? ""} failed: ${last ?? error.message}`));
      },
    );
  });
}

/**
 * Whether a process exists and is not a zombie. Root may signal any process (EPERM still means it exists).
 * A killed postmaster stays a zombie until its parent (often init, which may reap slowly) collects it, and a
 * zombie holds no port or shared memory, so on Linux /proc decides.
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return process.platform !== "linux"; // no /proc: trust the signal test
  }
}

/** What a directory's permission check needs: its mode bits and owner. */
export interface DirStat {
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
}

/** The groups `owner` belongs to: its primary group and the groups of /etc/group that list it. */
export function groupsOf(owner: ServerOwner, groupFile?: string): number[] {
  const groups = owner.gid === undefined ? [] : [owner.gid];
  let text = groupFile;
  if (text === undefined) {
    try {
      text = readFileSync("/etc/group", "utf8");
    } catch {
      return groups;
    }
  }
  for (const line of text.split("\n")) {
    const [, , gid, members] = line.split(":");
    if (members !== undefined && members.split(",").includes(owner.name)) groups.push(Number(gid));
  }
  return groups;
}

/** Whether a user may pass through (search) a directory: the x bit of the class the user falls in, as the kernel decides. */
export function maySearch(dir: DirStat, uid: number, groups: readonly number[]): boolean {
  if (uid === 0) return true;
  if (dir.uid === uid) return (dir.mode & 0o100) !== 0;
  if (groups.includes(dir.gid)) return (dir.mode & 0o010) !== 0;
  return (dir.mode & 0o001) !== 0;
}

/**
 * The first directory on the way to `target` (inclusive) that the server's user cannot pass through, or
 * null when it can reach it (or when the server runs as this process's own user). Directories that do not
 * exist yet end the walk: whoever creates them decides their mode.
 */
export function blockingDirectory(target: string, owner: ServerOwner, statDir: (dir: string) => DirStat | null = statOrNull): string | null {
  if (owner.uid === undefined || owner.uid === process.getuid?.()) return null;
  const groups = groupsOf(owner);
  const parts = resolve(target).split(sep).filter((part) => part !== "");
  let dir: string = sep;
  for (let i = 0; i <= parts.length; i++) {
    if (i > 0) dir = join(dir, parts[i - 1] ?? "");
    const found = statDir(dir);
    if (found === null) return null;
    if (!maySearch(found, owner.uid, groups)) return dir;
  }
  return null;
}

function statOrNull(dir: string): DirStat | null {
  try {
    const found = statSync(dir);
    return found.isDirectory() ? found : null;
  } catch {
    return null;
  }
}
