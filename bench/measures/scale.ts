/**
 * Scale: a postmaster with many idle static workers. Time from `bgworker start` until all run; RSS of the
 * postmaster and of an idle worker against idle plain processes shaped as parts of a worker (bare `node`,
 * with `import "bgworker"`, with tsx, with a worker thread: ./apart.ts); total CPU of the whole tree while
 * idle; `status` over the socket (and the CLI's `bgworker status`, which adds a Node start); then sequential
 * dynamic launch/terminate cycles with the postmaster's RSS and open descriptors before and after. For each
 * cycle the bench also notes, outside the timed part, the spares the pool listed before the launch; then, of
 * the runner that became the worker, how long it had existed when the launch began and how much CPU it used
 * until Started: a runner forked for the launch, or a spare still booting, is what a slow cycle waits for.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import type { Context } from "../lib/context.js";
import { writeScaleExtension } from "../lib/libraries.js";
import { childrenOf, CliPostmaster, cpuTicks, isSpare, pssKb, startedAt, statusField, TICKS_PER_SECOND } from "../lib/postmaster.js";
import { CLI } from "../lib/project.js";
import { progress } from "../lib/report.js";
import { waitQuiet } from "../lib/quiet.js";
import { now, sleep, until } from "../lib/stats.js";
import { measureMemoryShapes, type MemoryShape } from "./apart.js";

const run = promisify(execFile);

export interface ScaleResults {
  readonly workers: number;
  readonly allRunningMs: number;
  readonly postmasterRssKb: number;
  readonly workerRssKb: number;
  readonly workerPssKb: number;
  readonly shapes: Record<"bare" | "package" | "tsx" | "thread", MemoryShape>;
  readonly idleCpuPercent: number;
  readonly idleSeconds: number;
  readonly statusMs: number[];
  readonly cliStatusMs: number[];
  readonly cycles: number;
  readonly cycleLaunchMs: number[];
  /** Per cycle: spares the pool listed just before the launch. */
  readonly cycleSpares: number[];
  /** Per cycle: how long the runner that became the worker had existed when the launch began (< 0: forked after). */
  readonly cycleRunnerAgeMs: number[];
  /**
   * Per cycle: CPU the runner used from the launch's start to Started (to /proc's 10 ms). A warm spare only
   * becomes the worker (a tick at most); a spare still booting, or a runner forked for the launch, finishes
   * its boot first.
   */
  readonly cycleRunnerCpuMs: number[];
  readonly cyclesSeconds: number;
  readonly rssKb: { readonly start: number; readonly end: number };
  readonly fds: { readonly start: number; readonly end: number };
}

const average = (values: number[]): number => values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);

export async function measureScale(ctx: Context): Promise<ScaleResults> {
  const count = ctx.sizes.staticWorkers;
  const extension = writeScaleExtension(ctx.project, count);
  const t0 = now();
  const pm = await CliPostmaster.start(ctx.project, [extension], ["--no-database", "--max-worker-processes", String(count + 16)]);
  const client = await ctx.bgw.connect(pm.socket);
  try {
    await until("every static worker running", async () => ((await client.status()).filter((row) => row.state === "running").length >= count ? true : undefined), 600_000, 20);
    const allRunningMs = now() - t0;
    progress(`scale: ${count} static workers running after ${(allRunningMs / 1000).toFixed(1)} s`);
    // Idle means settled: the spares the start-up asked for have booted, the machine has gone quiet (the
    // last workers' post-start-up compilation and garbage collection are done), and then some more time.
    await pm.sparesWarm(120_000);
    const settled = await waitQuiet("idle CPU", ctx.sizes.quietSeconds);
    progress(`scale: tree ${settled.quiet ? "quiet" : `still busy (${settled.busyCpus} CPUs)`} after ${settled.waitedSeconds} s; settling ${ctx.sizes.settleSeconds} s more`);
    await sleep(ctx.sizes.settleSeconds * 1000);
    const workers = pm.children().filter((child) => !child.spare).map((child) => child.pid);
    const workerRss = workers.map((pid) => statusField(pid, "VmRSS")).filter(Number.isFinite);
    const workerPss = workers.map((pid) => pssKb(pid)).filter(Number.isFinite);
    const shapes = await measureMemoryShapes();

    const tree = (): number[] => [pm.pid, ...childrenOf(pm.pid)];
    const ticksBefore = tree().reduce((sum, pid) => sum + cpuTicks(pid), 0);
    const idleStart = now();
    await sleep(ctx.sizes.idleSeconds * 1000);
    const ticksAfter = tree().reduce((sum, pid) => sum + cpuTicks(pid), 0);
    const idleSeconds = (now() - idleStart) / 1000;
    const idleCpuPercent = ((ticksAfter - ticksBefore) / TICKS_PER_SECOND / idleSeconds) * 100;

    const statusMs: number[] = [];
    for (let i = 0; i < ctx.sizes.statusSamples; i++) {
      const s0 = now();
      await client.status();
      statusMs.push(now() - s0);
      await sleep(50);
    }
    const cliStatusMs: number[] = [];
    const env = { ...process.env };
    delete env.NODE_OPTIONS;
    for (let i = 0; i < Math.min(5, ctx.sizes.statusSamples); i++) {
      const s0 = now();
      await run(process.execPath, [CLI, "status", "--socket", pm.socket], { env, maxBuffer: 16 << 20 });
      cliStatusMs.push(now() - s0);
    }
    progress("scale: idle CPU and status measured; launch/terminate cycles");

    const rssStart = pm.rssKb();
    const fdsStart = pm.openFds();
    const cycleLaunchMs: number[] = [];
    const cycleSpares: number[] = [];
    const cycleRunnerAgeMs: number[] = [];
    const cycleRunnerCpuMs: number[] = [];
    const statics = new Set(workers);
    const c0 = now();
    for (let i = 0; i < ctx.sizes.cycles; i++) {
      const builder = new ctx.bgw.BackgroundWorkerBuilder(`cycle ${i}`).setLibrary(ctx.libraries.idleJs).setFunction("idle");
      // The pool as /proc shows it, read before the clock starts (the static workers skipped: no reads for them).
      const spares = new Map(childrenOf(pm.pid).filter((pid) => !statics.has(pid) && isSpare(pid)).map((pid) => [pid, cpuTicks(pid)]));
      cycleSpares.push(spares.size);
      const l0 = now();
      const worker = await client.loadDynamic(builder);
      const pid = await worker.waitForStartup();
      cycleLaunchMs.push(now() - l0);
      cycleRunnerAgeMs.push(l0 - startedAt(pid));
      cycleRunnerCpuMs.push(((cpuTicks(pid) - (spares.get(pid) ?? 0)) * 1000) / TICKS_PER_SECOND);
      await worker.terminate().waitForShutdown();
      if ((i + 1) % 100 === 0) progress(`scale: cycle ${i + 1}/${ctx.sizes.cycles}`);
    }
    const cyclesSeconds = (now() - c0) / 1000;
    await sleep(2_000);
    return {
      workers: count,
      allRunningMs,
      postmasterRssKb: rssStart,
      workerRssKb: average(workerRss),
      workerPssKb: average(workerPss),
      shapes,
      idleCpuPercent,
      idleSeconds,
      statusMs,
      cliStatusMs,
      cycles: ctx.sizes.cycles,
      cycleLaunchMs,
      cycleSpares,
      cycleRunnerAgeMs,
      cycleRunnerCpuMs,
      cyclesSeconds,
      rssKb: { start: rssStart, end: pm.rssKb() },
      fds: { start: fdsStart, end: pm.openFds() },
    };
  } finally {
    await client.close();
    await pm.stop();
  }
}
