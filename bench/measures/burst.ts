/**
 * A burst: `burst` launches at once from one client (more than the spare pool holds). Each launch's time is
 * from the common start to its Started; then every worker is terminated and the pool is watched refilling.
 */
import type { Context } from "../lib/context.js";
import type { CliPostmaster } from "../lib/postmaster.js";
import { now, sleep, until } from "../lib/stats.js";

export interface BurstResults {
  readonly launchMs: number[];
  readonly started: number;
  readonly allStartedMs: number;
  readonly sparesBefore: number;
  /** Spares once the pool settled after the burst (it grows with demand). */
  readonly sparesAfter: number;
  readonly refilledMs: number;
}

export async function measureBurst(ctx: Context, pm: CliPostmaster): Promise<BurstResults> {
  const client = await ctx.bgw.connect(pm.socket);
  try {
    await sleep(1_500);
    const sparesBefore = pm.children().filter((child) => child.spare).length;
    const t0 = now();
    const launched = await Promise.all(
      Array.from({ length: ctx.sizes.burst }, async (_, i) => {
        const builder = new ctx.bgw.BackgroundWorkerBuilder(`burst ${i}`).setLibrary(ctx.libraries.idleJs).setFunction("idle");
        const worker = await client.loadDynamic(builder);
        await worker.waitForStartup();
        return { worker, ms: now() - t0 };
      }),
    );
    const allStartedMs = now() - t0;
    await Promise.all(launched.map(({ worker }) => worker.terminate().waitForShutdown()));
    const t1 = now();
    // Refilled: as many warm spares as before at least, and no change for a second.
    let last = -1;
    let stableSince = now();
    const sparesAfter = await until(
      "the spare pool to refill",
      () => {
        const spares = pm.children().filter((child) => child.spare).length;
        if (spares !== last) {
          last = spares;
          stableSince = now();
        }
        return spares >= sparesBefore && now() - stableSince > 1_000 ? spares : undefined;
      },
      120_000,
      50,
    );
    return { launchMs: launched.map((l) => l.ms), started: launched.length, allStartedMs, sparesBefore, sparesAfter, refilledMs: stableSince - t1 };
  } finally {
    await client.close();
  }
}
