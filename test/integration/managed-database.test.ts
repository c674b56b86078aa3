/** A managed cluster (`--pgdata`) across postmaster runs, including a postmaster killed under it. */
import assert from "node:assert/strict";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Cluster } from "../../src/database/cluster.js";
import { startPostmaster } from "../helpers/postmaster.js";

describe("managed database", () => {
  it("a server left running by a killed postmaster is stopped and started afresh by the next one", async (t) => {
    const dir = await mkdtemp(join(tmpdir(), "bgw-managed-"));
    // The server runs as the postgres user, which must reach its data directory.
    await chmod(dir, 0o755);
    const pgdata = join(dir, "pgdata");
    t.after(async () => {
      const cluster = await Cluster.at(pgdata).catch(() => undefined);
      if (cluster !== undefined && (await cluster.runningPid()) !== null) await cluster.stop("immediate");
      await rm(dir, { recursive: true, force: true });
    });

    const first = await startPostmaster({ args: ["--pgdata", pgdata] });
    const cluster = await Cluster.at(pgdata);
    const server = await cluster.runningPid();
    assert.ok(server !== null, "the first postmaster started a server");
    first.signal("SIGKILL");
    await first.exited;
    await first.close();
    assert.equal(await cluster.runningPid(), server, "the server outlives a killed postmaster");

    const second = await startPostmaster({ args: ["--pgdata", pgdata] });
    try {
      await second.waitForLog(new RegExp(`^stopping the PostgreSQL server \\(pid ${server}\\) left running by postmaster ${first.pid}, which is gone$`));
      const restarted = await cluster.runningPid();
      assert.ok(restarted !== null && restarted !== server, "a fresh server runs");
      second.signal("SIGINT");
      assert.deepEqual(await second.exited, { code: 0, signal: null });
      assert.equal(await cluster.runningPid(), null, "a fast shutdown stops the managed server after the workers");
    } finally {
      await second.close();
    }
  });
});
