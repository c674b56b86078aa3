/**
 * Where an embedded cluster lives. Normally `./.bgworker/pgdata`; but when bgworker runs as root, the server
 * runs as the `postgres` OS user, and a project inside a directory that user cannot pass through (a project
 * under /root, a 0700 parent) cannot hold its cluster. Such a project's cluster is kept in the state directory
 * instead, at a path derived from the project's own, so every run of the same project finds the same cluster.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { blockingDirectory, type ServerOwner } from "./owner.js";
import { stateDir } from "./state-dir.js";

/** `<state>/clusters/<project>-<12 hex of sha256(pgdata)>/pgdata`: stable for one project path, distinct between projects. */
export function relocatedPgdata(projectPgdata: string, root: string = stateDir()): string {
  const absolute = resolve(projectPgdata);
  const project = basename(dirname(dirname(absolute))).replace(/[^A-Za-z0-9._-]/g, "_") || "project";
  const digest = createHash("sha256").update(absolute).digest("hex").slice(0, 12);
  return join(root, "clusters", `${project}-${digest}`, "pgdata");
}

export interface PgdataChoice {
  readonly pgdata: string;
  /** True when the cluster is kept outside the project (named in the start-up line and in `status`). */
  readonly relocated: boolean;
  /** The directory that closes the project to the server's user, when that is why the cluster moved. */
  readonly blockedAt?: string;
}

/** What the choice looks at, so that the rule is unit-tested without a file system. */
export interface LocationFacts {
  /** Whether the directory holds a cluster (a PG_VERSION file). */
  readonly hasCluster: (pgdata: string) => boolean;
  /** The directory that keeps the server's user from `pgdata`, or null. */
  readonly blockedAt: (pgdata: string) => string | null;
}

/**
 * The project's own place wins when it already holds a cluster (an unreachable one then fails with the
 * blocking directory named) or when the server's user can reach it; else the relocated place, which also
 * wins once it holds a cluster, so opening the directory later does not silently start an empty cluster.
 */
export function choosePgdata(projectPgdata: string, relocated: string, facts: LocationFacts): PgdataChoice {
  if (facts.hasCluster(projectPgdata)) return { pgdata: projectPgdata, relocated: false };
  if (facts.hasCluster(relocated)) return { pgdata: relocated, relocated: true };
  const blockedAt = facts.blockedAt(projectPgdata);
  if (blockedAt === null) return { pgdata: projectPgdata, relocated: false };
  return { pgdata: relocated, relocated: true, blockedAt };
}

/** `choosePgdata` on this machine, for `owner`. */
export function embeddedPgdata(projectPgdata: string, owner: ServerOwner): PgdataChoice {
  return choosePgdata(resolve(projectPgdata), relocatedPgdata(projectPgdata), {
    hasCluster: (pgdata) => {
      try {
        readFileSync(join(pgdata, "PG_VERSION"));
        return true;
      } catch {
        return false;
      }
    },
    // `.bgworker` itself is opened to the server's user when the cluster is created: only its parents count.
    blockedAt: (pgdata) => blockingDirectory(dirname(dirname(pgdata)), owner),
  });
}
