/**
 * Throwaway PostgreSQL clusters for the test suite, built on the product's own cluster code: a fresh temp dir
 * (removed on stop), a free loopback port, settings that trade durability for speed. Always `stop()` what you
 * create (t.after / finally), including standbys.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Cluster, SUPERUSER, type ServerSettings } from "../../src/database/cluster.js";
import { makeOwnedDir, processAlive, runAs } from "../../src/database/owner.js";
import { pickFreePort } from "../../src/database/ports.js";
import type { ConnectionParams } from "../../src/database/types.js";

export interface TestCluster {
  readonly params: ConnectionParams;
  /** `postgres://postgres@127.0.0.1:PORT/postgres` */
  readonly url: string;
  readonly pgdata: string;
  /** Stops the server (immediate mode: nothing to keep) and removes its temp dir. Safe to call twice. */
  stop(): Promise<void>;
  /** SIGKILLs the server's postmaster, as a crash; resolves once it is gone. */
  crash(): Promise<void>;
  /** Starts the server again on the same port (after `crash()`, or stops it first if it runs). */
  restart(): Promise<void>;
}

export interface TestStandby extends TestCluster {
  /** `pg_ctl promote -w`. */
  promote(): Promise<void>;
}

/**
 * Durability off: the data of a test cluster is thrown away anyway. Replication on, for standbys. Dynamic
 * shared memory in files under the data directory, so a server the tests crash leaves nothing in /dev/shm.
 */
const FAST_SETTINGS: ServerSettings = {
  dynamic_shared_memory_type: "mmap",
  fsync: false,
  synchronous_commit: false,
  full_page_writes: false,
  wal_level: "replica",
  max_wal_senders: 5,
};

/** A fresh primary. `port`: listen there instead of a free port picked now (e.g. one a monitor already watches). */
export async function createTestCluster(options: { settings?: ServerSettings; port?: number } = {}): Promise<TestCluster> {
  return open("primary", { ...FAST_SETTINGS, ...options.settings }, options.port, async (cluster) => {
    await cluster.init({ noSync: true });
  });
}

/** A streaming standby of `primary` (pg_basebackup -R), with or without hot standby (read-only connections). */
export async function createStandby(primary: TestCluster, options: { hotStandby: boolean }): Promise<TestStandby> {
  return open("standby", { ...FAST_SETTINGS, hot_standby: options.hotStandby }, undefined, async (cluster) => {
    const { host, port } = primary.params;
    await runAs(cluster.owner, cluster.program("pg_basebackup"), [
      "-D", cluster.pgdata, "-h", host, "-p", String(port), "-U", SUPERUSER, "-R", "-X", "stream", "--no-sync", "-c", "fast",
    ]);
  });
}

async function open(
  kind: string,
  settings: ServerSettings,
  fixedPort: number | undefined,
  create: (cluster: Cluster) => Promise<void>,
): Promise<TestStandby> {
  const dir = await mkdtemp(join(tmpdir(), `bgw-${kind}-`));
  let cluster: Cluster | undefined;
  const stop = async (): Promise<void> => {
    try {
      await cluster?.stop("immediate");
    } finally {
      const pid = await cluster?.runningPid();
      if (pid !== null && pid !== undefined) process.kill(pid, "SIGKILL"); // never leave a server behind
      await rm(dir, { recursive: true, force: true });
    }
  };
  try {
    cluster = await Cluster.at(join(dir, "pgdata"));
    await makeOwnedDir(dir, cluster.owner); // mkdtemp makes it 0700 root's: the server's user must enter it
    await create(cluster);
    const port = fixedPort ?? (await pickFreePort());
    await cluster.start({ port, settings });
    const params: ConnectionParams = { host: "127.0.0.1", port, user: SUPERUSER, database: "postgres" };
    const c = cluster;
    return {
      params,
      url: `postgres://${SUPERUSER}@127.0.0.1:${port}/postgres`,
      pgdata: c.pgdata,
      stop,
      async crash() {
        const pid = await c.runningPid();
        if (pid === null) throw new Error(`no server runs on ${c.pgdata}`);
        process.kill(pid, "SIGKILL");
        while (processAlive(pid)) await sleep(10);
      },
      async restart() {
        await c.stop("fast");
        // After a crash, orphaned backends may hold the old shared memory for a moment: retry briefly.
        for (let attempt = 0; ; attempt++) {
          try {
            await c.start({ port, settings });
            return;
          } catch (error) {
            if (attempt >= 20) throw error;
            await sleep(250);
          }
        }
      },
      promote: () => c.promote(),
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
