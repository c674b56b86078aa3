/**
 * Every postmaster the current user runs on this host, for `bgworker status --all`: one small JSON file per
 * postmaster in the user's runtime directory (`$XDG_RUNTIME_DIR/bgworker`, else `/tmp/bgworker-UID`),
 * owner-only. A postmaster removes its entry when it stops; entries of postmasters that died are removed by
 * whoever lists them.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { processAlive } from "../database/owner.js";

export interface RegistryEntry {
  readonly pid: number;
  /** The postmaster's working directory (its project). */
  readonly cwd: string;
  readonly socket: string | null;
  readonly logFile: string | null;
  /** `http://HOST:PORT/` when serving HTTP. */
  readonly http: string | null;
  readonly extensions: readonly string[];
  /** ISO time. */
  readonly startedAt: string;
}

export function registryDir(env: NodeJS.ProcessEnv = process.env): string {
  const runtime = env.XDG_RUNTIME_DIR;
  if (runtime !== undefined && runtime !== "" && path.isAbsolute(runtime)) return path.join(runtime, "bgworker");
  return path.join(os.tmpdir(), `bgworker-${process.getuid?.() ?? os.userInfo().username}`);
}

/** Creates the directory owner-only, and refuses one that someone else owns or others can write. */
function ensureDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const stat = fs.lstatSync(dir);
  const uid = process.getuid?.();
  if (!stat.isDirectory() || (uid !== undefined && stat.uid !== uid)) {
    throw new Error(`postmaster registry ${dir} is not a directory owned by this user`);
  }
  if ((stat.mode & 0o077) !== 0) fs.chmodSync(dir, 0o700);
}

/** Adds this postmaster; returns the function that removes it. */
export function register(entry: RegistryEntry, dir: string = registryDir()): () => void {
  ensureDir(dir);
  // Entries of killed postmasters (SIGKILL leaves no chance to remove them) go now rather than pile up.
  listPostmasters(dir);
  const file = path.join(dir, `${entry.pid}.json`);
  const temporary = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(temporary, JSON.stringify(entry), { mode: 0o600 });
  fs.renameSync(temporary, file);
  let removed = false;
  return () => {
    if (removed) return;
    removed = true;
    fs.rmSync(file, { force: true });
  };
}

function isEntry(value: unknown): value is RegistryEntry {
  const entry = value as Partial<RegistryEntry> | null;
  return typeof entry === "object" && entry !== null && typeof entry.pid === "number" && typeof entry.cwd === "string";
}

/** The live postmasters, oldest first; entries of dead ones (and unreadable files) are removed. */
export function listPostmasters(dir: string = registryDir()): RegistryEntry[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const entries: RegistryEntry[] = [];
  for (const name of names) {
    if (!/^[0-9]+\.json$/.test(name)) continue;
    const file = path.join(dir, name);
    let entry: unknown;
    try {
      entry = JSON.parse(fs.readFileSync(file, "utf8"));
    } catch {
      entry = undefined;
    }
    if (isEntry(entry) && processAlive(entry.pid)) entries.push(entry);
    else fs.rmSync(file, { force: true });
  }
  return entries.sort((a, b) => a.startedAt.localeCompare(b.startedAt));
}
