/**
 * Dynamic launch to Started with a warm spare (`loadDynamic()` + `waitForStartup()` from a client process over
 * the control socket), `.ts` and `.js` libraries, first launch of a library and repeats (of a library launched
 * once before, unmeasured); against a cold `child_process.fork` of a plain script until its first message
 * (and how long the `fork()` call itself blocks the forking process), and PM2's programmatic start of a plain
 * script until its first line runs.
 * PostgreSQL's own dynamic worker is measured in ./database.ts.
 */
import { fork } from "node:child_process";
import { join } from "node:path";
import type { StartOptions } from "pm2";
import type { Context } from "../lib/context.js";
import { freshIdleLibrary } from "../lib/libraries.js";
import { statusField, type CliPostmaster } from "../lib/postmaster.js";
import { REPO, reportLines } from "../lib/project.js";
import { progress } from "../lib/report.js";
import { now, sleep, until } from "../lib/stats.js";

const PEER = join(REPO, "bench", "peers", "child.mjs");
const PM2_SCRIPT = join(REPO, "bench", "peers", "pm2-script.cjs");
/** Between launches, at least this long, and until the spare taken by the last launch is replaced and warm. */
const SETTLE_MS = 500;

export interface LaunchResults {
  readonly firstTs: number[];
  readonly repeatTs: number[];
  readonly firstJs: number[];
  readonly repeatJs: number[];
  readonly coldFork: number[];
  /** How long `child_process.fork()` itself blocked the bench's process (the spawn, before any event). */
  readonly forkCallMs: number[];
  /** The bench process's RSS when it forked: a fork's cost grows with the forking process's memory. */
  readonly forkerRssKb: number;
  readonly pm2: number[];
}

async function launchOnce(ctx: Context, client: Awaited<ReturnType<Context["bgw"]["connect"]>>, library: string): Promise<number> {
  const builder = new ctx.bgw.BackgroundWorkerBuilder("bench launch").setLibrary(library).setFunction("idle");
  const t0 = now();
  const worker = await client.loadDynamic(builder);
  await worker.waitForStartup();
  const ms = now() - t0;
  await worker.terminate().waitForShutdown();
  return ms;
}

export async function measureLaunch(ctx: Context, pm: CliPostmaster): Promise<LaunchResults> {
  const client = await ctx.bgw.connect(pm.socket);
  const results = { firstTs: [] as number[], repeatTs: [] as number[], firstJs: [] as number[], repeatJs: [] as number[], coldFork: [] as number[], forkCallMs: [] as number[], pm2: [] as number[] };
  try {
    await pm.sparesWarm();
    // A repeat is the launch of a library launched before: each is launched once first, unmeasured (its path
    // is new to this project, so that launch compiles it; the first-launch rows measure that).
    for (const library of [ctx.libraries.idleTs, ctx.libraries.idleJs]) {
      await launchOnce(ctx, client, library);
      await sleep(SETTLE_MS);
      await pm.sparesWarm();
    }
    // Interleaved, so that the load of the machine weighs alike on every configuration.
    for (let i = 0; i < ctx.sizes.launches; i++) {
      for (const ts of [true, false]) {
        await sleep(SETTLE_MS);
        await pm.sparesWarm();
        (ts ? results.firstTs : results.firstJs).push(await launchOnce(ctx, client, freshIdleLibrary(ctx.project, ts)));
        await sleep(SETTLE_MS);
        await pm.sparesWarm();
        (ts ? results.repeatTs : results.repeatJs).push(await launchOnce(ctx, client, ts ? ctx.libraries.idleTs : ctx.libraries.idleJs));
      }
      progress(`launch ${i + 1}/${ctx.sizes.launches}`);
    }
  } finally {
    await client.close();
  }
  for (let i = 0; i < ctx.sizes.coldForks; i++) {
    await sleep(200);
    const sample = await coldFork();
    results.coldFork.push(sample.ms);
    results.forkCallMs.push(sample.callMs);
  }
  const forkerRssKb = statusField(process.pid, "VmRSS");
  results.pm2.push(...(await pm2Starts(ctx)));
  return { ...results, forkerRssKb };
}

/** A cold fork of a plain Node script (no tsx, no bgworker), until its first message arrives. */
async function coldFork(): Promise<{ ms: number; callMs: number }> {
  const t0 = now();
  const child = fork(PEER, ["hello"], { execArgv: [], stdio: ["ignore", "ignore", "inherit", "ipc"] });
  const callMs = now() - t0;
  await new Promise<void>((resolve, reject) => {
    child.once("message", () => resolve());
    child.once("exit", () => reject(new Error("bench: the forked peer exited early")));
  });
  const ms = now() - t0;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.disconnect();
  await exited;
  return { ms, callMs };
}

type Pm2 = typeof import("pm2");

/** PM2's own daemon, in a home of its own inside the project (never the user's ~/.pm2). */
export async function withPm2<T>(ctx: Context, use: (pm2: Pm2) => Promise<T>): Promise<T> {
  process.env.PM2_HOME = join(ctx.project.dir, "pm2");
  const pm2 = ((await import("pm2")) as unknown as { default: Pm2 }).default;
  await new Promise<void>((resolve, reject) => pm2.connect((error) => (error ? reject(error) : resolve())));
  try {
    return await use(pm2);
  } finally {
    await new Promise<void>((resolve) => pm2.killDaemon(() => resolve()));
    pm2.disconnect();
  }
}

export function pm2Call<T>(call: (done: (error: Error | null, value?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => call((error, value) => (error ? reject(error) : resolve(value as T))));
}

/** PM2's programmatic start of a plain script, until the script's first line has run. */
async function pm2Starts(ctx: Context): Promise<number[]> {
  return withPm2(ctx, async (pm2) => {
    const samples: number[] = [];
    for (let i = 0; i < ctx.sizes.launches + 1; i++) {
      await sleep(200);
      const file = ctx.project.reportFile();
      const name = `bench-start-${i}`;
      const t0 = now();
      await pm2Call((done) =>
        pm2.start({ script: PM2_SCRIPT, name, autorestart: false, env: { BENCH_FILE: file, BENCH_MODE: "start" } } as StartOptions, (error) => done(error)),
      );
      const entered = await until("the PM2 script to run", () => {
        const line = reportLines(file).find((l) => l.startsWith("enter "));
        return line === undefined ? undefined : Number(line.slice(6));
      });
      if (i > 0) samples.push(entered - t0); // the first start also boots PM2's daemon
      await pm2Call((done) => pm2.delete(name, (error) => done(error)));
    }
    return samples;
  });
}
