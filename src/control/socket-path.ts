/** Where the control socket lives, and the 107-byte limit of a Unix socket path. */
import { statSync } from "node:fs";
import path from "node:path";
import { makeError } from "../errors.js";

/** `sun_path` holds 108 bytes including the terminating NUL. */
export const MAX_SOCKET_PATH_BYTES = 107;

/** The socket of a postmaster started in `cwd` without `--socket`: `./.bgworker/bgworker.sock`. */
export function defaultSocketPath(cwd: string = process.cwd()): string {
  return path.resolve(cwd, ".bgworker", "bgworker.sock");
}

/** Names the control socket for client commands and `connect()` (and `start`), as `--socket` does. */
export const SOCKET_ENV = "BGWORKER_SOCKET";

/**
 * The socket a client connects to: `explicit` (`--socket`, `connect(path)`), else `$BGWORKER_SOCKET`, else the
 * socket in the nearest `.bgworker/` directory at or above `cwd` (as git finds `.git`), else `cwd`'s default,
 * which the "no postmaster running" error then names.
 */
export function clientSocketPath(
  explicit: string | undefined,
  cwd: string = process.cwd(),
  env: NodeJS.ProcessEnv = process.env,
  isDirectory: (dir: string) => boolean = directoryExists,
): string {
  if (explicit !== undefined) return path.resolve(cwd, explicit);
  const fromEnv = env[SOCKET_ENV];
  if (fromEnv !== undefined && fromEnv !== "") return path.resolve(cwd, fromEnv);
  for (let dir = path.resolve(cwd); ; dir = path.dirname(dir)) {
    if (isDirectory(path.join(dir, ".bgworker"))) return defaultSocketPath(dir);
    if (path.dirname(dir) === dir) return defaultSocketPath(cwd);
  }
}

function directoryExists(dir: string): boolean {
  try {
    return statSync(dir).isDirectory();
  } catch {
    return false;
  }
}

/**
 * The string to hand to `listen()`/`connect()` for `socketPath` (an absolute path). The kernel limits the
 * path, not the file, so when the absolute path is too long but the path relative to the working directory
 * fits, the relative one is used (deep temp and project directories are common). Throws an Error naming
 * the path and the limit when neither fits (a RangeError, code ERR_BGWORKER_SOCKET_PATH_TOO_LONG).
 */
export function socketAddress(socketPath: string, cwd: string = process.cwd()): string {
  if (Buffer.byteLength(socketPath) <= MAX_SOCKET_PATH_BYTES) return socketPath;
  const relative = path.relative(cwd, socketPath);
  if (relative.length > 0 && Buffer.byteLength(relative) <= MAX_SOCKET_PATH_BYTES) return relative;
  throw makeError(
    RangeError,
    "ERR_BGWORKER_SOCKET_PATH_TOO_LONG",
    `socket path ${socketPath} is ${Buffer.byteLength(socketPath)} bytes; a Unix socket path must be at most ` +
      `${MAX_SOCKET_PATH_BYTES} bytes (choose a shorter one with --socket)`,
  );
}
