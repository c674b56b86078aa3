/**
 * Making the server binaries of npm's platform package runnable: their shared libraries' symlinks (which the
 * package's install script restores, and which are missing when scripts are not run) and, when the server's
 * OS user cannot reach `node_modules` (root's project under /root), a copy in bgworker's state directory.
 */
import { chmod, cp, lstat, mkdir, mkdtemp, readFile, rename, rm, symlink } from "node:fs/promises";
import { basename, dirname, join, relative } from "node:path";
import { makeError } from "../errors.js";
import { blockingDirectory, type ServerOwner } from "./owner.js";
import { stateDir } from "./state-dir.js";

/** `native/pg-symlinks.json` of the package: `{ source, target }` paths relative to the package root. */
interface LinkEntry {
  readonly source: string;
  readonly target: string;
}

/** The links of `pg-symlinks.json` (empty when the file is missing or malformed). */
export function parseLinkList(text: string): LinkEntry[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return [];
  }
  if (!Array.isArray(parsed)) return [];
  return parsed.filter(
    (entry): entry is LinkEntry =>
      typeof (entry as LinkEntry | null)?.source === "string" && typeof (entry as LinkEntry | null)?.target === "string",
  );
}

/**
 * Creates the missing symlinks of `<packageRoot>/native/pg-symlinks.json`, each relative to its directory (so
 * that a copy stays valid). Returns false when one could not be created (a read-only `node_modules`).
 */
export async function restoreLibraryLinks(packageRoot: string): Promise<boolean> {
  let text: string;
  try {
    text = await readFile(join(packageRoot, "native", "pg-symlinks.json"), "utf8");
  } catch {
    return true; // nothing to restore
  }
  for (const { source, target } of parseLinkList(text)) {
    const linkPath = join(packageRoot, target);
    if (!linkPath.startsWith(join(packageRoot, "native"))) continue; // never write outside the package
    try {
      await lstat(linkPath);
      continue;
    } catch {
      // missing: created below
    }
    try {
      await symlink(relative(dirname(linkPath), join(packageRoot, source)), linkPath);
    } catch {
      return false;
    }
  }
  return true;
}

/**
 * `native/bin` of the package, ready to run: links restored in place, or in a copy under the state directory
 * when the package is read-only. Null when neither works.
 */
export async function runnableNpmBindir(bindir: string): Promise<string | null> {
  const packageRoot = dirname(dirname(bindir));
  if (await restoreLibraryLinks(packageRoot)) return bindir;
  return (await stagedCopy(packageRoot)) ?? null;
}

/**
 * `bindir` if `owner` can reach it, else the bindir of a copy of the package's `native/` in the state
 * directory, made once per package version (the copy is renamed into place whole, so a half copy never serves).
 */
export async function reachableBindir(bindir: string, owner: ServerOwner): Promise<string> {
  if (blockingDirectory(bindir, owner) === null) return bindir;
  const copy = await stagedCopy(dirname(dirname(bindir)));
  const blocked = blockingDirectory(copy, owner);
  if (blocked !== null) {
    throw makeError(
      Error,
      "ERR_BGWORKER_PGDATA_UNREACHABLE",
      `the "${owner.name}" OS user cannot reach the server binaries in ${bindir} nor their copy in ${copy} ` +
        `(blocked at ${blocked}): let it through (chmod o+x ${blocked}) or install PostgreSQL (apt-get install postgresql)`,
    );
  }
  return copy;
}

/** Copies `<packageRoot>/native` to `<state>/postgresql/<package>-<version>/native` once; returns its bindir. */
async function stagedCopy(packageRoot: string): Promise<string> {
  const version = await packageVersion(packageRoot);
  const home = join(stateDir(), "postgresql");
  const target = join(home, `${basename(packageRoot)}-${version}`);
  const bindir = join(target, "native", "bin");
  try {
    await lstat(bindir);
    return bindir;
  } catch {
    // not copied yet
  }
  // Default modes (0755 dirs): the server's user must read and run the copy; nothing in it is secret.
  await mkdir(home, { recursive: true, mode: 0o755 });
  const temp = await mkdtemp(join(home, ".copy-"));
  try {
    await cp(join(packageRoot, "native"), join(temp, "native"), { recursive: true, verbatimSymlinks: true });
    await restoreLibraryLinks(temp);
    await chmod(temp, 0o755); // mkdtemp made it 0700
    await rename(temp, target);
  } catch (error) {
    await rm(temp, { recursive: true, force: true });
    if ((error as NodeJS.ErrnoException).code !== "ENOTEMPTY" && (error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  }
  return bindir;
}

async function packageVersion(packageRoot: string): Promise<string> {
  try {
    const version = (JSON.parse(await readFile(join(packageRoot, "package.json"), "utf8")) as { version?: unknown }).version;
    return typeof version === "string" ? version : "unknown";
  } catch {
    return "unknown";
  }
}
