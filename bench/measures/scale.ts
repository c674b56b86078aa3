/**
 * Scale: a postmaster with many idle static workers. Time from `bgworker start` until all run; RSS of the
 * postmaster and of an idle worker against a bare `node` doing nothing; total CPU of the whole tree while
 * idle; `status` over the socket (and the CLI's `bgworker status`, which adds a Node start); then sequential
 * dynamic launch/terminate cycles with the postmaster's RSS and open descriptors before and after.
 */
import { execFile, spawn } from "node:child_process";
import { promisify } from "node:util";
import type { Context } from "../lib/context.js";
import { writeScaleExtension } from "../lib/libraries.js";
import { childrenOf, CliPostmaster, cpuTicks, pssKb, statusField } from "../lib/postmaster.js";
import { CLI } from "../lib/project.js";
import { progress } from "../lib/report.js";
import { now, sleep, until } from "../lib/stats.js";

const run = promisify(execFile);
const TICKS_PER_SECOND = 100;

export interface ScaleResults {
  readonly workers: number;
  readonly allRunningMs: number;
  readonly postmasterRssKb: number;
  readonly workerRssKb: number;
  readonly workerPssKb: number;
  readonly bareNodeRssKb: number;
  readonly bareNodePssKb: number;
  readonly idleCpuPercent: number;
  readonly idleSeconds: number;
  readonly statusMs: number[];
  readonly cliStatusMs: number[];
  readonly cycles: number;
  readonly cycleLaunchMs: number[];
  readonly cyclesSeconds: number;
  readonly rssKb: { readonly start: number; readonly end: number };
  readonly fds: { readonly start: number; readonly end: number };
}

async function bareNode(): Promise<{ rss: number; pss: number }> {
  const child = spawn(process.execPath, ["-e", "setInterval(() => {}, 1 << 30)"], { stdio: "ignore" });
  await sleep(1_000);
  const result = { rss: statusField(child.pid!, "VmRSS"), pss: pssKb(child.pid!) };
  child.kill("SIGKILL");
  return result;
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
    // Let spares finish booting and V8's post-start-up garbage collections pass: idle means settled.
    await sleep(ctx.quick ? 5_000 : 20_000);
    const workers = pm.children().filter((child) => !child.spare).map((child) => child.pid);
    const workerRss = workers.map((pid) => statusField(pid, "VmRSS")).filter(Number.isFinite);
    const workerPss = workers.map((pid) => pssKb(pid)).filter(Number.isFinite);
    const bare = await bareNode();

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
    const c0 = now();
    for (let i = 0; i < ctx.sizes.cycles; i++) {
      const builder = new ctx.bgw.BackgroundWorkerBuilder(`cycle ${i}`).setLibrary(ctx.libraries.idleJs).setFunction("idle");
      const l0 = now();
      const worker = await client.loadDynamic(builder);
      await worker.waitForStartup();
      cycleLaunchMs.push(now() - l0);
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
      bareNodeRssKb: bare.rss,
      bareNodePssKb: bare.pss,
      idleCpuPercent,
      idleSeconds,
      statusMs,
      cliStatusMs,
      cycles: ctx.sizes.cycles,
      cycleLaunchMs,
      cyclesSeconds,
      rssKb: { start: rssStart, end: pm.rssKb() },
      fds: { start: fdsStart, end: pm.openFds() },
    };
  } finally {
    await client.close();
    await pm.stop();
  }
}
