/**
 * `bgworker pg-install [--pg-config PATH]`: builds the bgworker PostgreSQL extension (this package's pg/
 * directory, PGXS) and installs it into the server that `pg_config` names, for in-server mode (SPEC §9). The
 * build happens in a temporary copy, so an installed package's directory is never written; the Node that runs
 * this command and this package's directory become the defaults of `bgworker.node` and `bgworker.package`.
 */
import { execFile, spawn } from "node:child_process";
import { accessSync, constants, cpSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { findPostgresBinaries } from "../database/binaries.js";
import { packageRoot } from "../package-paths.js";
import { HELP } from "./help.js";
import { EXIT_FAILURE, EXIT_OK, parseOrUsage, UsageError } from "./usage.js";

const COMMAND = "pg-install";
const execFileAsync = promisify(execFile);

/** This package's root (the directory of package.json). */
const PACKAGE_DIR = packageRoot();

/** The extension's files that `make install` puts in place, relative to pg_config's directories. */
const INSTALLED = [
  { dir: "pkglibdir", file: "bgworker.so" },
  { dir: "sharedir", file: "extension/bgworker.control" },
  { dir: "sharedir", file: "extension/bgworker--0.1.sql" },
] as const;

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** pg_config of the server binaries bgworker would use (SPEC §2), else the one on PATH. */
async function defaultPgConfig(): Promise<string> {
  try {
    const binaries = await findPostgresBinaries();
    const candidate = join(binaries.bindir, "pg_config");
    if (binaries.kind === "system" && executable(candidate)) return candidate;
  } catch {
    // no server binaries found: pg_config on PATH may still name a server
  }
  return "pg_config";
}

async function pgConfig(path: string, flag: string): Promise<string> {
  try {
    const { stdout } = await execFileAsync(path, [flag], { timeout: 10_000 });
    return stdout.trim();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new Error(
      code === "ENOENT"
        ? `pg_config not found (${path}): install PostgreSQL's server development package (Debian: postgresql-server-dev-NN) or give --pg-config PATH`
        : `${path} ${flag} failed: ${error instanceof Error ? error.message.split("\n")[0] : String(error)}`,
    );
  }
}

function make(cwd: string, args: string[]): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn("make", args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.on("error", (error: NodeJS.ErrnoException) =>
      reject(new Error(error.code === "ENOENT" ? "make not found: install make and a C compiler (Debian: build-essential)" : error.message)),
    );
    child.on("exit", (code) => {
      if (code === 0) return resolvePromise();
      const lines = output.trim().split("\n");
      const error = lines.find((line) => /error|Permission denied/i.test(line)) ?? lines[lines.length - 1] ?? "";
      reject(new Error(`make ${args[0] ?? ""} failed (exit code ${code}): ${error.trim()}`));
    });
  });
}

export async function run(args: string[]): Promise<number> {
  const { values } = parseOrUsage(COMMAND, {
    args,
    options: {
      "pg-config": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help === true) {
    process.stdout.write(HELP[COMMAND] ?? "");
    return EXIT_OK;
  }
  const given = values["pg-config"];
  if (given !== undefined && !executable(given)) throw new UsageError(`--pg-config ${JSON.stringify(given)} is not an executable pg_config`, COMMAND);
  const pgConfigPath = given ?? (await defaultPgConfig());

  const version = await pgConfig(pgConfigPath, "--version");
  const major = /PostgreSQL (\d+)/.exec(version)?.[1] ?? "NN";
  const includeDir = await pgConfig(pgConfigPath, "--includedir-server");
  const pgxs = await pgConfig(pgConfigPath, "--pgxs");
  if (!existsSync(join(includeDir, "postgres.h")) || !existsSync(pgxs)) {
    process.stderr.write(
      `bgworker: ${version}'s server development headers are missing (no ${join(includeDir, "postgres.h")}): install them (Debian: apt-get install postgresql-server-dev-${major})\n`,
    );
    return EXIT_FAILURE;
  }
  const sources = join(PACKAGE_DIR, "pg");
  if (!existsSync(join(sources, "Makefile"))) throw new Error(`the extension's sources are missing from this package (${sources})`);
  if (!existsSync(join(PACKAGE_DIR, "dist", "inserver", "child.js"))) {
    throw new Error(`this package is not built (${join(PACKAGE_DIR, "dist")} has no inserver/child.js): run npm run build first`);
  }

  const build = mkdtempSync(join(tmpdir(), "bgworker-pg-"));
  try {
    cpSync(sources, build, { recursive: true, filter: (path) => !/\.(o|bc|so)$|\/tmp_check(\/|$)/.test(path) });
    const makeArgs = [`PG_CONFIG=${pgConfigPath}`, `NODE=${process.execPath}`, `PACKAGE_DIR=${PACKAGE_DIR}`];
    await make(build, ["all", ...makeArgs]);
    await make(build, ["install", ...makeArgs]);
  } finally {
    rmSync(build, { recursive: true, force: true });
  }

  const dirs = { pkglibdir: await pgConfig(pgConfigPath, "--pkglibdir"), sharedir: await pgConfig(pgConfigPath, "--sharedir") };
  process.stdout.write(`installed the bgworker extension into ${version} (${pgConfigPath}):\n`);
  for (const { dir, file } of INSTALLED) process.stdout.write(`  ${join(dirs[dir], file)}\n`);
  process.stdout.write(
    `workers run with node ${process.execPath} and bgworker ${PACKAGE_DIR} (the defaults of bgworker.node and bgworker.package)\n` +
      `enable it in postgresql.conf: shared_preload_libraries = 'bgworker' and bgworker.modules = '/path/to/extension.ts', then restart the server\n`,
  );
  return EXIT_OK;
}
