/**
 * Latch wake-up across processes: half a setLatch/waitLatch round trip between two workers; the same two
 * processes then bounce a raw futex word (the physical floor: one FUTEX_WAKE, one scheduler wake-up); and
 * half a `process.send` round trip between the bench and a forked plain child.
 */
import { fork } from "node:child_process";
import { join } from "node:path";
import type { Context } from "../lib/context.js";
import type { CliPostmaster } from "../lib/postmaster.js";
import { REPO, reportLines } from "../lib/project.js";
import { median, until } from "../lib/stats.js";

const PEER = join(REPO, "bench", "peers", "child.mjs");

export async function measureLatch(ctx: Context, pm: CliPostmaster): Promise<{ latchUs: number[]; futexUs: number[]; ipcUs: number[] }> {
  const client = await ctx.bgw.connect(pm.socket);
  const file = ctx.project.reportFile();
  let report: { latchUs: number[]; futexUs: number[] };
  try {
    const start = async (fn: string, argument?: number): Promise<void> => {
      const builder = new ctx.bgw.BackgroundWorkerBuilder(`bench ${fn}`).setLibrary(ctx.libraries.workers).setFunction(fn).setExtra(file).enableShmemAccess();
      if (argument !== undefined) builder.setArgument(argument);
      await (await client.loadDynamic(builder)).waitForStartup();
    };
    await start("ponger");
    await start("pinger", ctx.sizes.pingRounds);
    report = await until("the ping-pong report", () => {
      const line = reportLines(file)[0];
      return line === undefined ? undefined : (JSON.parse(line) as typeof report);
    }, 120_000, 20);
  } finally {
    await client.close();
  }
  const ipcRtt: number[] = [];
  const child = fork(PEER, ["pingpong"], { execArgv: [], stdio: ["ignore", "ignore", "inherit", "ipc"] });
  for (let i = 0; i < ctx.sizes.pingRounds + 50; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      child.once("message", () => resolve());
      child.send({ t: "ping" });
    });
    if (i >= 50) ipcRtt.push((performance.now() - t0) * 1000);
  }
  child.disconnect();
  const half = (values: number[]): number[] => values.map((v) => v / 2);
  void median;
  return { latchUs: half(report.latchUs), futexUs: half(report.futexUs), ipcUs: half(ipcRtt) };
}
