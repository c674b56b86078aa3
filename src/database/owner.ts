/**
 * Who runs the server. PostgreSQL refuses to run as root, so when this process is root the server programs run
 * as the `postgres` OS user (spawn's uid/gid) and the data directory belongs to that user.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { chown, mkdir } from "node:fs/promises";
import { dirname } from "node:path";

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
    throw new Error(
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
        reject(new Error(`${program.split("/").pop() ?? program} ${args[0] ?? ""} failed: ${last ?? error.message}`));
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
