/**
 * Restart with restart time 0: a worker that exits with code 1 after a little over a second (so that restart
 * storm damping never applies), from its last line before `process.exit(1)` to the replacement's first
 * line; against PM2 with `restart_delay: 0` restarting a plain script that does the same.
 */
import { join } from "node:path";
import type { StartOptions } from "pm2";
import type { Context } from "../lib/context.js";
import type { CliPostmaster } from "../lib/postmaster.js";
import { REPO, reportLines } from "../lib/project.js";
import { until } from "../lib/stats.js";
import { pm2Call, withPm2 } from "./launch.js";

const PM2_SCRIPT = join(REPO, "bench", "peers", "pm2-script.cjs");

/** exit -> next enter gaps, in ms, from a report file of `enter`/`exit` lines. */
function gaps(file: string): number[] {
  const events = reportLines(file).map((line) => line.split(" ") as [string, string]);
  const out: number[] = [];
  for (let i = 1; i < events.length; i++) {
    if (events[i - 1]![0] === "exit" && events[i]![0] === "enter") out.push(Number(events[i]![1]) - Number(events[i - 1]![1]));
  }
  return out;
}

export async function measureRestart(ctx: Context, pm: CliPostmaster): Promise<{ bgworker: number[]; pm2: number[] }> {
  const client = await ctx.bgw.connect(pm.socket);
  const file = ctx.project.reportFile();
  let bgworker: number[];
  try {
    const builder = new ctx.bgw.BackgroundWorkerBuilder("bench restart")
      .setLibrary(ctx.libraries.workers)
      .setFunction("flapper")
      .setRestartTime(0)
      .setExtra(file);
    const worker = await client.loadDynamic(builder);
    bgworker = await until("the restarts", () => (gaps(file).length >= ctx.sizes.restarts ? gaps(file) : undefined), 120_000, 50);
    await worker.terminate().waitForShutdown();
  } finally {
    await client.close();
  }
  const pm2 = await withPm2(ctx, async (pm2) => {
    const peerFile = ctx.project.reportFile();
    await pm2Call((done) =>
      pm2.start(
        {
          script: PM2_SCRIPT,
          name: "bench-restart",
          autorestart: true,
          restart_delay: 0,
          max_restarts: 1000,
          env: { BENCH_FILE: peerFile, BENCH_MODE: "flap" },
        } as StartOptions,
        (error) => done(error),
      ),
    );
    const samples = await until("PM2's restarts", () => (gaps(peerFile).length >= ctx.sizes.restarts ? gaps(peerFile) : undefined), 120_000, 50);
    await pm2Call((done) => pm2.delete("bench-restart", (error) => done(error)));
    return samples;
  });
  return { bgworker, pm2 };
}
