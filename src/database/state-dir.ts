/**
 * bgworker's own directory outside projects, for what the server's OS user must reach when a project's
 * directory is closed to it: copies of npm's server binaries and relocated clusters (see docs/database.md).
 */
import { homedir } from "node:os";
import { join, resolve } from "node:path";

/** Overrides the state directory, e.g. to keep relocated clusters on a Docker volume. */
export const STATE_DIR_ENV = "BGWORKER_STATE_DIR";

/** `$BGWORKER_STATE_DIR`, else `/var/lib/bgworker` for root, else `$XDG_STATE_HOME/bgworker` (`~/.local/state/bgworker`). */
export function stateDir(env: NodeJS.ProcessEnv = process.env, uid: number | undefined = process.getuid?.()): string {
  const chosen = env[STATE_DIR_ENV];
  if (chosen !== undefined && chosen !== "") return resolve(chosen);
  if (uid === 0) return "/var/lib/bgworker";
  const xdg = env["XDG_STATE_HOME"];
  return join(xdg !== undefined && xdg !== "" ? xdg : join(homedir(), ".local", "state"), "bgworker");
}
