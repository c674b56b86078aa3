/**
 * Many idle workers at once (the scale rows beside their peers): N idle static `.ts` workers started with the
 * CLI (`bgworker start EXT --no-database`, an extension registering N static workers of one `.ts` library),
 * against the floor, N bare `node` processes forked at once by a plain `node` (peers/forker.mjs), each until
 * its first IPC message, and against PM2 starting N idle scripts (one ecosystem of N apps, PM2's daemon
 * already up). For each: the time until all run, and once settled the whole tree's memory (PSS summed over
 * the postmaster, the forker or PM2's daemon and every descendant).
 *
 * bgworker's time runs from the postmaster's start (its status `uptimeMs`, read once every row runs) to the
 * moment the last worker's function began, which each worker writes down (where a floor child sends its
 * message), both on the machine's clock. A row's own `uptimeMs` would not do: it counts from the hand-over
 * of the worker to its process, before that process has finished booting. The wall clock from the CLI's
 * spawn (a Node start and the extension's `_PG_init` included) is kept beside it.
 *
 * Memory guard: a size is skipped when the machine's available memory could not hold it (the last measured
 * PSS a process, times N, with a margin), and a run is stopped when available memory falls below 1 GB.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { StartOptions } from "pm2";
import type { Context } from "../lib/context.js";
import { idleSource } from "../lib/libraries.js";
import { availableKb, treeMemory, treePids, type Memory } from "../lib/memory.js";
import { childrenOf, CliPostmaster, cpuTicks, TICKS_PER_SECOND } from "../lib/postmaster.js";
import { REPO, reportLines } from "../lib/project.js";
import { progress } from "../lib/report.js";
import { waitQuiet } from "../lib/quiet.js";
import { medianRound, now, sleep } from "../lib/stats.js";
import { pm2Call, withPm2 } from "./launch.js";

const FORKER = join(REPO, "bench", "peers", "forker.mjs");
const PM2_SCRIPT = join(REPO, "bench", "peers", "pm2-script.cjs");
/** Below this much available memory, a run in progress is stopped. */
const FLOOR_AVAILABLE_KB = 1 << 20;

export type TreeMemory = Memory & { readonly processes: number };

/**
 * CPU used by the time all ran (user + system, from /proc, in 10 ms ticks): the parent's (the forker, the
 * postmaster or PM2's daemon) and its children's, in total and a child on average. Idle children use none
 * after their start, so this is what starting them cost, beside the time it took.
 */
export interface TreeCpu {
  readonly parentMs: number;
  readonly childrenMs: number;
  readonly children: number;
  readonly perChildMs: number;
}

/** The CPU of `root` and of its direct children now. */
function treeCpu(root: number): TreeCpu {
  const ms = (pid: number): number => (cpuTicks(pid) * 1000) / TICKS_PER_SECOND;
  const children = childrenOf(root);
  const childrenMs = children.reduce((sum, pid) => sum + ms(pid), 0);
  return { parentMs: ms(root), childrenMs, children: children.length, perChildMs: children.length === 0 ? Number.NaN : childrenMs / children.length };
}

export interface ManySide {
  /** Time until all run (ms); NaN when it did not finish. */
  readonly allMs: number;
  /** CPU the start cost, read when all ran (not for PM2, whose daemon forks through its own layers). */
  readonly cpu?: TreeCpu;
  readonly memory?: TreeMemory;
  /** Why the run was skipped or stopped, if it was. */
  readonly skipped?: string;
  /** With several rounds: every round's `allMs`, in the order they ran (this record is the median round's). */
  readonly rounds?: readonly number[];
}

export interface ManyResults {
  readonly count: number;
  readonly floor: ManySide & { readonly forkCallsMs?: number };
  readonly bgworker: ManySide & {
    readonly wallMs?: number;
    readonly spares?: number;
    readonly stopMs?: number;
    /** Workers running when the wait ended; the others exited (no restart time) and are described in `exited`. */
    readonly running?: number;
    readonly exited?: readonly string[];
  };
  readonly pm2?: ManySide;
}

function plainEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  return env;
}

/** Undefined when `count` processes of `kbEach` fit in the available memory with a margin; else why not. */
function tooBig(count: number, kbEach: number): string | undefined {
  const needKb = count * kbEach * 1.2 + 2 * FLOOR_AVAILABLE_KB;
  const haveKb = availableKb();
  return needKb <= haveKb ? undefined : `skipped: ${count} processes of ${(kbEach / 1024).toFixed(1)} MB PSS need about ${(needKb / 2 ** 20).toFixed(1)} GB, ${(haveKb / 2 ** 20).toFixed(1)} GB available`;
}

class MemoryLow extends Error {}

function checkMemory(): void {
  const kb = availableKb();
  if (kb < FLOOR_AVAILABLE_KB) throw new MemoryLow(`stopped: available memory fell to ${(kb / 1024).toFixed(0)} MB`);
}

/** Ends every process of a tree that is still there (after its root was asked to stop). */
async function reap(pids: readonly number[], graceMs = 10_000): Promise<void> {
  const alive = (pid: number): boolean => {
    try {
      process.kill(pid, 0);
      return !readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z ");
    } catch {
      return false;
    }
  };
  const deadline = Date.now() + graceMs;
  while (pids.some(alive) && Date.now() < deadline) await sleep(100);
  for (const pid of pids.filter(alive)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone meanwhile
    }
  }
}

/** The longest wait for quiet inside a size's runs (they wait several times). */
const quietBound = (ctx: Context): number => Math.min(ctx.sizes.quietSeconds, 20);

async function settle(ctx: Context, label: string): Promise<void> {
  const quiet = await waitQuiet(label, quietBound(ctx));
  progress(`${label}: ${quiet.quiet ? "quiet" : `still busy (${quiet.busyCpus} CPUs)`} after ${quiet.waitedSeconds} s; settling ${ctx.sizes.manySettleSeconds} s more`);
  await sleep(ctx.sizes.manySettleSeconds * 1000);
}

export async function measureFloor(ctx: Context, count: number, kbEach: number): Promise<ManyResults["floor"]> {
  const skipped = tooBig(count, kbEach);
  if (skipped !== undefined) return { allMs: Number.NaN, skipped };
  const forker = spawn(process.execPath, [FORKER, String(count)], { cwd: ctx.project.dir, env: plainEnv(), stdio: ["pipe", "pipe", "inherit"] });
  let pids: number[] = [];
  try {
    const line = await new Promise<string>((resolve, reject) => {
      createInterface({ input: forker.stdout! }).once("line", resolve);
      forker.once("exit", (code) => reject(new Error(`bench: the forker exited with ${code}`)));
      const timer = setInterval(() => {
        try {
          checkMemory();
        } catch (error) {
          clearInterval(timer);
          reject(error);
        }
      }, 500);
      forker.stdout!.once("data", () => clearInterval(timer));
    });
    const result = JSON.parse(line) as { allMs: number; forkCallsMs: number; exitedEarly: number };
    const cpu = treeCpu(forker.pid!);
    progress(`scale: floor, ${count} bare node forked at once, all spoke after ${(result.allMs / 1000).toFixed(2)} s`);
    await settle(ctx, `floor of ${count}`);
    pids = treePids(forker.pid!);
    const memory = treeMemory(forker.pid!);
    return { allMs: result.exitedEarly > 0 ? Number.NaN : result.allMs, forkCallsMs: result.forkCallsMs, cpu, memory, ...(result.exitedEarly > 0 ? { skipped: `${result.exitedEarly} exited before their message` } : {}) };
  } catch (error) {
    if (error instanceof MemoryLow) return { allMs: Number.NaN, skipped: error.message };
    throw error;
  } finally {
    if (pids.length === 0) pids = treePids(forker.pid!);
    forker.kill("SIGTERM");
    await reap(pids);
  }
}

/** While bgworker's workers start, how often the postmaster is asked for its status (see measureBgworker). */
const STATUS_EVERY_MS = 2_000;

/** The `enter` times written to `file` so far, by bgworker's idle workers (idleSource) or PM2's scripts. */
function enterTimes(file: string): number[] {
  return reportLines(file)
    .filter((line) => line.startsWith("enter "))
    .map((line) => Number(line.slice(6)));
}

/** The `enter` times in `file` once there are `count` of them (or after 10 s, however many there are). */
async function enteredAt(file: string, count: number): Promise<number[]> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const times = enterTimes(file);
    if (times.length >= count || Date.now() > deadline) return times;
    await sleep(20);
  }
}

export async function measureBgworker(ctx: Context, count: number, kbEach: number): Promise<ManyResults["bgworker"]> {
  const skipped = tooBig(count, kbEach);
  if (skipped !== undefined) return { allMs: Number.NaN, skipped };
  const entries = ctx.project.reportFile();
  // Each worker writes when its function began, where a floor child sends its message: the row ends there.
  ctx.project.write("many-worker.ts", idleSource(true, "many", entries));
  const extension = ctx.project.write(
    `many-extension-${count}.ts`,
    `import { BackgroundWorkerBuilder } from "bgworker";
export function _PG_init(): void {
  for (let i = 0; i < ${count}; i++) {
    new BackgroundWorkerBuilder("many " + i).setLibrary("./many-worker.ts").setFunction("idle").load();
  }
}
`,
  );
  const t0 = now();
  const pm = await CliPostmaster.start(ctx.project, [extension], ["--no-database", "--max-worker-processes", String(count + 16)]);
  const client = await ctx.bgw.connect(pm.socket);
  let pids: number[] = [];
  let stopped = false;
  try {
    let allMs = Number.NaN;
    let wallMs = Number.NaN;
    const deadline = Date.now() + 20 * 60_000;
    let exited: string[] = [];
    let cpu: TreeCpu | undefined;
    let asked = Date.now();
    for (;;) {
      checkMemory();
      // The workers' entry file is read while they start; the postmaster is asked for its status only once
      // every worker has written its entry, or every 2 s (for workers that exited instead): a status report
      // reads /proc for every worker, load that the floor's children do not carry while they start.
      if (enterTimes(entries).length < count && Date.now() - asked < STATUS_EVERY_MS) {
        await sleep(count > 300 ? 200 : 50);
        continue;
      }
      asked = Date.now();
      const report = await client.statusReport();
      const running = report.workers.filter((row) => row.state === "running");
      // A static worker without a restart time that exited stays stopped: the wait ends without it, and says so.
      const gone = report.workers.filter((row) => row.state === "stopped" && row.restartTimeMs === null);
      if (running.length + gone.length >= count) {
        // The postmaster's start on the machine's clock, as its own uptime puts it (to within this report's trip).
        const startedAt = Date.now() - report.postmaster.uptimeMs;
        wallMs = now() - t0;
        cpu = treeCpu(pm.pid);
        // Each running worker's line comes from its function, just after the postmaster has seen it enter.
        const entered = await enteredAt(entries, running.length);
        if (entered.length >= running.length && entered.length > 0) allMs = Math.max(...entered) - startedAt;
        exited = gone.map((row) => {
          const lines = pm.log.filter((record) => (record.message ?? "").includes(`"${row.name}"`) || (record as { worker?: { name?: string } }).worker?.name === row.name);
          return `${row.name}: exit ${row.lastExit?.code ?? row.lastExit?.signal ?? "?"}${lines.length === 0 ? "" : ` (${lines.map((record) => `${record.level}: ${record.message}${record.detail === undefined ? "" : ` ${record.detail.split("\n")[0]}`}`).join(" | ")})`}`;
        });
        if (exited.length > 0) progress(`scale: ${exited.length} of ${count} static workers exited instead of running: ${exited.join("; ")}`);
        break;
      }
      if (Date.now() > deadline) throw new Error(`bench: ${running.length}/${count} static workers running after 20 minutes`);
      await sleep(50);
    }
    progress(`scale: ${count} static .ts workers running ${(allMs / 1000).toFixed(2)} s after the postmaster's start (${(wallMs / 1000).toFixed(2)} s after the CLI's spawn)`);
    await pm.sparesWarm(120_000);
    await settle(ctx, `${count} workers`);
    pids = treePids(pm.pid);
    const memory = treeMemory(pm.pid);
    const spares = pm.children().filter((child) => child.spare).length;
    const s0 = now();
    await client.close();
    await pm.stop();
    stopped = true;
    return { allMs, wallMs, ...(cpu === undefined ? {} : { cpu }), memory, spares, stopMs: now() - s0, running: count - exited.length, exited };
  } catch (error) {
    if (error instanceof MemoryLow) return { allMs: Number.NaN, skipped: error.message };
    throw error;
  } finally {
    if (pids.length === 0) pids = treePids(pm.pid);
    if (!stopped) {
      await client.close().catch(() => undefined);
      await pm.stop();
    }
    await reap(pids);
  }
}

export async function measurePm2(ctx: Context, count: number, kbEach: number): Promise<ManySide> {
  const skipped = tooBig(count, kbEach);
  if (skipped !== undefined) return { allMs: Number.NaN, skipped };
  let pids: number[] = [];
  try {
    return await withPm2(ctx, async (pm2) => {
      const daemon = Number(readFileSync(join(process.env.PM2_HOME!, "pm2.pid"), "utf8").trim());
      const file = ctx.project.reportFile();
      const apps = Array.from({ length: count }, (_, i) => ({ script: PM2_SCRIPT, name: `bench-many-${i}`, autorestart: false, env: { BENCH_FILE: file, BENCH_MODE: "start" } }));
      const t0 = now();
      const started = pm2Call((done) => pm2.start({ apps } as unknown as StartOptions, (error) => done(error)));
      started.catch(() => undefined);
      const deadline = Date.now() + 20 * 60_000;
      let entered: number[] = [];
      for (;;) {
        checkMemory();
        entered = enterTimes(file);
        if (entered.length >= count) break;
        if (Date.now() > deadline) throw new Error(`bench: ${entered.length}/${count} PM2 scripts running after 20 minutes`);
        await sleep(count > 300 ? 1000 : 250);
      }
      await started;
      const allMs = Math.max(...entered) - t0;
      progress(`scale: PM2, ${count} idle scripts running after ${(allMs / 1000).toFixed(2)} s`);
      await settle(ctx, `PM2's ${count} scripts`);
      pids = treePids(daemon);
      const memory = treeMemory(daemon);
      return { allMs, memory };
    });
  } catch (error) {
    if (error instanceof MemoryLow) return { allMs: Number.NaN, skipped: error.message };
    throw error;
  } finally {
    await reap(pids);
  }
}

async function quietBefore(ctx: Context, label: string): Promise<void> {
  const quiet = await waitQuiet(label, quietBound(ctx));
  progress(`before ${label}: ${quiet.quiet ? "quiet" : `still busy (${quiet.busyCpus} CPUs)`} after ${quiet.waitedSeconds} s`);
}

/** PSS a process, in kB, by which each side's memory guard judges a size. */
export interface PerProcessKb {
  readonly floor: number;
  readonly bgworker: number;
  readonly pm2: number;
}

/** Why any round was skipped or stopped, whichever round is the median: named by round when there were several. */
function skippedIn(rounds: readonly ManySide[]): { skipped?: string } {
  const reasons = rounds.flatMap((side, i) => (side.skipped === undefined ? [] : [rounds.length === 1 ? side.skipped : `round ${i + 1}: ${side.skipped}`]));
  return reasons.length === 0 ? {} : { skipped: reasons.join("; ") };
}

/**
 * The floor and bgworker, alternating for `rounds` rounds, then PM2 once (up to `manyPm2Max` processes), each
 * after the machine went quiet. Each side reports its median round, with every round's time (the rows judge
 * the rounds pair by pair, bench/run.ts); a worker that exited, or a round skipped, in any round is reported
 * whichever round is the median.
 */
export async function measureMany(ctx: Context, count: number, kbEach: PerProcessKb, rounds = 1): Promise<ManyResults> {
  const floors: ManyResults["floor"][] = [];
  const ours: ManyResults["bgworker"][] = [];
  for (let round = 1; round <= rounds; round++) {
    const of = rounds === 1 ? "" : ` (round ${round} of ${rounds})`;
    await quietBefore(ctx, `the floor of ${count}${of}`);
    floors.push(await measureFloor(ctx, count, kbEach.floor));
    await quietBefore(ctx, `${count} workers${of}`);
    ours.push(await measureBgworker(ctx, count, kbEach.bgworker));
  }
  const exited = ours.flatMap((side, i) => (side.exited ?? []).map((line) => (rounds === 1 ? line : `round ${i + 1}: ${line}`)));
  const running = Math.min(...ours.map((side) => side.running ?? count));
  const bgworker = { ...medianRound(ours), ...(exited.length === 0 ? {} : { exited, running }), ...skippedIn(ours) };
  const floor = { ...medianRound(floors), ...skippedIn(floors) };
  if (count > ctx.sizes.manyPm2Max) return { count, floor, bgworker };
  await quietBefore(ctx, `PM2's ${count}`);
  const pm2 = await measurePm2(ctx, count, kbEach.pm2);
  return { count, floor, bgworker, pm2 };
}
