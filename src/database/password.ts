/**
 * Where a session's password comes from, as libpq: the URL's, else `PGPASSWORD`, else the password file
 * (`PGPASSFILE`, default `~/.pgpass`, ignored unless owner-only). Asked only when the server wants one, so a
 * trust or peer setup never reads the file. node-postgres would read `~/.pgpass` itself, but prints a
 * deprecation warning when it does; the `pgpass` package it uses is called here directly.
 */
import { createRequire } from "node:module";
import { makeError } from "../errors.js";
import type { ConnectionParams } from "./types.js";

type PgPass = (info: { host: string; port: number; database: string; user: string }, done: (password: string | undefined) => void) => void;


/** The password for pg's `password` option: the URL's, or a lookup made when the server asks for one. */
export function passwordOf(params: ConnectionParams): string | (() => Promise<string>) {
  if (params.password !== undefined) return params.password;
  return () => lookUpPassword(params);
}

async function lookUpPassword(params: ConnectionParams): Promise<string> {
  const fromEnv = process.env["PGPASSWORD"];
  if (fromEnv !== undefined && fromEnv !== "") return fromEnv;
  const pgpass = createRequire(import.meta.url)("pgpass") as PgPass;
  const found = await new Promise<string | undefined>((resolve) =>
    pgpass({ host: params.host, port: params.port, database: params.database, user: params.user }, resolve),
  );
  if (found !== undefined) return found;
  throw makeError(
    Error,
    "ERR_BGWORKER_NO_PASSWORD",
    `no password supplied for user "${params.user}" (give it in PGPASSWORD or a password file: PGPASSFILE, default ~/.pgpass, mode 0600)`,
  );
}
