/**
 * A burst: `burst` launches at once from one client (more than the spare pool holds). Each launch's time is
 * from the common start to its Started. Then the pool is watched refilling, from the burst's last Started
 * (when the postmaster forks the replacements: once every launch in progress has entered) until it holds its
 * target of spares again, each booted and quiet; only then is every worker terminated.
 */
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import type { Context } from "../lib/context.js";
import { startedAt, type CliPostmaster } from "../lib/postmaster.js";
import { REPO } from "../lib/project.js";
import { now } from "../lib/stats.js";

export interface BurstResults {
  readonly launchMs: number[];
  readonly started: number;
  readonly allStartedMs: number;
  readonly sparesBefore: number;
  /** The pool's target after the burst: one more spare per launch that found none warm, up to the ceiling. */
  readonly target: number;
  /** Spares once the pool refilled (it grows with demand). */
  readonly sparesAfter: number;
  /**
   * The burst's last Started -> the pool holds its target of warm spares again; NaN if not within 120 s. The
   * watch begins at the last Started: a pool already warm then counts as refilled within the first 200 ms.
   */
  readonly refilledMs: number;
  /** When each refilled spare was forked, from the burst's start: before allStartedMs, it booted during the burst. */
  readonly spareForkedMs: number[];
  /** CPU each refilled spare had used once warm: a runner's boot (Node, tsx, this package, preloads). */
  readonly spareBootCpuMs: number[];
}

/** The pool's ceiling, from the built package (postmaster/spare-policy.js), so that the bench follows it. */
async function spareCeiling(): Promise<number> {
  const policy = (await import(pathToFileURL(join(REPO, "dist", "postmaster", "spare-policy.js")).href)) as { SPARE_CEILING: number };
  return policy.SPARE_CEILING;
}

export async function measureBurst(ctx: Context, pm: CliPostmaster): Promise<BurstResults> {
  const client = await ctx.bgw.connect(pm.socket);
  try {
    await pm.sparesWarm();
    const sparesBefore = pm.children().filter((child) => child.spare).length;
    // The default floor is one spare; each launch beyond the warm spares is a miss that raises the target.
    const target = Math.min(await spareCeiling(), Math.max(1, sparesBefore) + Math.max(0, ctx.sizes.burst - sparesBefore));
    const t0 = now();
    const launched = await Promise.all(
      Array.from({ length: ctx.sizes.burst }, async (_, i) => {
        const builder = new ctx.bgw.BackgroundWorkerBuilder(`burst ${i}`).setLibrary(ctx.libraries.idleJs).setFunction("idle");
        const worker = await client.loadDynamic(builder);
        await worker.waitForStartup();
        return { worker, ms: now() - t0 };
      }),
    );
    const allStartedMs = Math.max(...launched.map((l) => l.ms));
    const refill = await pm.poolRefilled(target);
    const spareForkedMs = (refill?.pids ?? []).map((pid) => startedAt(pid) - t0);
    await Promise.all(launched.map(({ worker }) => worker.terminate().waitForShutdown()));
    return {
      launchMs: launched.map((l) => l.ms),
      started: launched.length,
      allStartedMs,
      sparesBefore,
      target,
      sparesAfter: refill?.pids.length ?? pm.children().filter((child) => child.spare).length,
      refilledMs: refill === undefined ? Number.NaN : refill.at - (t0 + allStartedMs),
      spareForkedMs,
      spareBootCpuMs: refill?.bootCpuMs ?? [],
    };
  } finally {
    await client.close();
  }
}
