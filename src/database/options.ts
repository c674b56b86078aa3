/** Validation of the `database` option and of connection URLs: pure, so the rules are unit-tested without a server. */
import { show } from "../errors.js";
import type { ConnectionParams, DatabaseOption } from "./types.js";

const DEFAULT_PORT = 5432;

/**
 * Checks a `database` option as given by a user (programmatic or CLI) and returns it typed.
 * Throws a `TypeError` naming the field, the value and the rule.
 */
export function validateDatabaseOption(value: unknown): DatabaseOption {
  if (value === "embedded") return value;
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new TypeError(`database: ${show(value)} is not a database option (use "embedded", { url } or { pgdata })`);
  }
  const keys = Object.keys(value);
  if (keys.length !== 1 || (keys[0] !== "url" && keys[0] !== "pgdata")) {
    throw new TypeError(
      `database: an object with keys [${keys.join(", ")}] is not a database option (use exactly one of { url } or { pgdata })`,
    );
  }
  const record = value as Record<string, unknown>;
  if (keys[0] === "url") {
    const url = record["url"];
    if (typeof url !== "string") throw new TypeError(`database.url: ${show(url)} must be a string`);
    parseDatabaseUrl(url); // throws on a malformed URL, so errors surface when the option is given
    return { url };
  }
  const pgdata = record["pgdata"];
  if (typeof pgdata !== "string" || pgdata.trim() === "") {
    throw new TypeError(`database.pgdata: ${show(pgdata)} must be a non-empty directory path`);
  }
  return { pgdata };
}

/**
 * Parses `postgres://user:password@host:port/database?host=/socket/dir` into connection parameters.
 * Defaults follow libpq: port 5432, user = the OS user, database = the user.
 * Error messages never repeat the URL, because it may hold a password.
 */
export function parseDatabaseUrl(url: string, osUser: string = defaultOsUser()): ConnectionParams {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(`database.url: not a valid URL (expected postgres://user@host:port/database)`);
  }
  if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") {
    throw new TypeError(
      `database.url: scheme "${parsed.protocol.replace(/:$/, "")}" is not PostgreSQL's (use postgres:// or postgresql://)`,
    );
  }
  // A unix socket directory may be given as ?host=/path, as libpq allows, since a path cannot be a URL host.
  const queryHost = parsed.searchParams.get("host");
  const host = queryHost ?? (decodeURIComponent(parsed.hostname).replace(/^\[(.*)\]$/, "$1") || "localhost");
  let port = DEFAULT_PORT;
  if (parsed.port !== "") {
    port = Number(parsed.port);
  }
  const queryPort = parsed.searchParams.get("port");
  if (queryPort !== null) {
    port = Number(queryPort);
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new TypeError(`database.url: port ${show(queryPort)} must be an integer from 1 to 65535`);
    }
  }
  const user = decodeURIComponent(parsed.username) || parsed.searchParams.get("user") || osUser;
  const path = decodeURIComponent(parsed.pathname.replace(/^\//, ""));
  if (path.includes("/")) {
    throw new TypeError(`database.url: database name ${show(path)} must not contain "/"`);
  }
  const database = path || parsed.searchParams.get("dbname") || user;
  const password = parsed.password === "" ? parsed.searchParams.get("password") : decodeURIComponent(parsed.password);
  return password === null ? { host, port, user, database } : { host, port, user, database, password };
}

/**
 * `url` without its password (in the user part or `?password=`), or null when it has none: what the process's
 * command line shows instead once started.
 */
export function withoutPassword(url: string): string | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return null;
  }
  if (parsed.password === "" && !parsed.searchParams.has("password")) return null;
  parsed.password = "";
  parsed.searchParams.delete("password");
  return parsed.toString();
}

/** `postgres://app@db:5432/app`: the parameters as a URL without the password, for logs and status. */
export function describeParams(params: ConnectionParams): string {
  const user = encodeURIComponent(params.user);
  const database = encodeURIComponent(params.database);
  if (params.host.startsWith("/")) {
    return `postgres://${user}@/${database}?host=${params.host}&port=${params.port}`;
  }
  const host = params.host.includes(":") ? `[${params.host}]` : params.host;
  return `postgres://${user}@${host}:${params.port}/${database}`;
}

function defaultOsUser(): string {
  return process.env["PGUSER"] ?? process.env["USER"] ?? "postgres";
}
