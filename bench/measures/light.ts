/**
 * Light workers: what a worker process costs against a bare `node` on the same Node line, measured in one
 * postmaster started with the CLI (`--no-database`) whose extension registers no worker:
 *
 *   idle postmaster   once its start-up's spares have booted: the whole tree's PSS (postmaster, spares and
 *                     anything they started), the spares' count and each one's PSS
 *   boot CPU          a runner's boot to warm spare (forked, Node, TypeScript support, this package, the `.ts`
 *                     library it preloads): a dynamic `.ts` worker takes the warm spare, and the replacement's
 *                     user + system CPU (/proc/PID/stat) is read once it has gone quiet (no CPU for 200 ms);
 *                     against `node -e 0` (its getrusage as bash's `times` gives a child's) and the parts below
 *   idle memory       one idle `.ts` worker and the warm spare beside it, against idle processes shaped as the
 *                     parts of a worker, side by side (so that they share Node's pages alike), each forked
 *                     with an IPC channel as a runner is:
 *                       bare        `node -e` that waits on its IPC channel (the peer of the target)
 *                       esm         an ES module entry file (peers/node.mjs), as a runner's bootstrap is
 *                       package     + `import "bgworker"` (dist/index.js)
 *                       library     + the `.ts` library loaded as a runner loads it (compiled files, no hooks)
 *                     and, each over `esm` alone: the package's TypeScript module hooks (which a runner
 *                     installs only for a library that needs them), `pg` imported, tsx's loader registered,
 *                     one worker thread
 *                     Each shape reports its own CPU from exec to shaped (getrusage), sampled as the spares are.
 */
import { execFile, fork, spawn, type ChildProcess } from "node:child_process";
import * as nodeModule from "node:module";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Context } from "../lib/context.js";
import { memoryOf, threadsOf, treeMemory, type Memory } from "../lib/memory.js";
import { CliPostmaster, cpuTicks, isSpare, startedAt, TICKS_PER_SECOND } from "../lib/postmaster.js";
import { REPO } from "../lib/project.js";
import { progress } from "../lib/report.js";
import { median, now, sleep } from "../lib/stats.js";

const run = promisify(execFile);
const PEER = join(REPO, "bench", "peers", "node.mjs");
/** A spare that used no CPU for this long has booted and warmed (as lib/postmaster.ts judges it). */
const QUIET_MS = 200;

export const SHAPES = ["bare", "esm", "typescript", "package", "library", "pg", "tsx", "thread"] as const;
export type Shape = (typeof SHAPES)[number];
/** What each shape loads (peers/node.mjs), in the runner's order. */
const SHAPE_PARTS: Record<Exclude<Shape, "bare">, string> = {
  esm: "bare",
  typescript: "typescript",
  package: "package",
  library: "package,library",
  pg: "pg",
  tsx: "tsx",
  thread: "thread",
};
const BARE_CODE = `const c = process.cpuUsage(); process.send({ t: "ready", cpuMs: (c.user + c.system) / 1000 }); process.on("disconnect", () => process.exit(0));`;

export interface IdlePostmaster {
  readonly tree: Memory & { readonly processes: number };
  readonly postmaster: Memory;
  readonly spares: number;
  readonly spareMemory: Memory[];
  /** What the postmaster's status row says of its spares, when it says anything (fields named spare*). */
  readonly statusSpares: Record<string, unknown>;
}

export interface LightResults {
  readonly node: string;
  /** Whether this Node line has in-thread module hooks (module.registerHooks, 22.15+). */
  readonly inThreadHooks: boolean;
  readonly idlePostmaster: IdlePostmaster;
  /** Per sample: the replacement spare's user + system CPU once warm (to /proc's 10 ms). */
  readonly spareBootCpuMs: number[];
  /** Per sample: from the replacement's fork (its start time in /proc) to the moment it went quiet. */
  readonly spareBootWallMs: number[];
  readonly nodeE0CpuMs: number[];
  /** Per shape, per sample: its own CPU from exec to shaped. */
  readonly shapeCpuMs: Record<Shape, number[]>;
  /** Per shape, per sample: from fork() to its ready message. */
  readonly shapeReadyMs: Record<Shape, number[]>;
  /** Medians over the reads of the side-by-side processes. */
  readonly memory: { readonly worker: Memory; readonly spare: Memory; readonly postmaster: Memory; readonly shapes: Record<Shape, Memory> };
  /** Threads of each process beside them (a loader thread, a watchdog thread, V8's and libuv's). */
  readonly threads: { readonly worker: number; readonly spare: number; readonly shapes: Record<Shape, number> };
}

function plainEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  delete env.NODE_OPTIONS;
  return env;
}

/** Starts one shaped process with an IPC channel; resolves with it, its CPU to shaped, and its fork-to-ready time. */
async function startShape(ctx: Context, shape: Shape): Promise<{ child: ChildProcess; cpuMs: number; readyMs: number }> {
  const env = plainEnv({ BENCH_LIBRARY: ctx.libraries.idleTs });
  const t0 = now();
  const child =
    shape === "bare"
      ? spawn(process.execPath, ["-e", BARE_CODE], { cwd: ctx.project.dir, env, stdio: ["ignore", "ignore", "inherit", "ipc"] })
      : fork(PEER, ["idle", SHAPE_PARTS[shape]], { cwd: ctx.project.dir, env, execArgv: [], stdio: ["ignore", "ignore", "inherit", "ipc"] });
  const cpuMs = await new Promise<number>((resolve, reject) => {
    child.once("message", (message: { cpuMs: number }) => resolve(message.cpuMs));
    child.once("exit", (code) => reject(new Error(`bench: the ${shape} shape exited with ${code} before ready`)));
  });
  return { child, cpuMs, readyMs: now() - t0 };
}

async function stopShape(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  if (child.connected) child.disconnect();
  const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
  await exited;
  clearTimeout(timer);
}

/** `node -e 0`'s user + system CPU, from getrusage of the child (bash's `times`, to the millisecond). */
async function nodeE0CpuMs(): Promise<number> {
  const { stdout } = await run("bash", ["-c", `"$0" -e 0; times`, process.execPath], { env: plainEnv() });
  const children = stdout.trim().split("\n")[1]!;
  const seconds = [...children.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60 + Number(m[2]));
  return (seconds[0]! + seconds[1]!) * 1000;
}

/**
 * Waits until the postmaster has a spare not in `known` that used no CPU for QUIET_MS; resolves with its pid,
 * its CPU by then and when it went quiet (wall-clock ms).
 */
async function newWarmSpare(pm: CliPostmaster, known: ReadonlySet<number>, timeoutMs = 60_000): Promise<{ pid: number; cpuMs: number; quietAt: number }> {
  const deadline = Date.now() + timeoutMs;
  const seen = new Map<number, { ticks: number; changed: number }>();
  for (;;) {
    const t = now();
    for (const { pid, spare } of pm.children()) {
      if (!spare || known.has(pid)) continue;
      const ticks = cpuTicks(pid);
      const entry = seen.get(pid);
      if (entry === undefined || entry.ticks !== ticks) seen.set(pid, { ticks, changed: t });
      else if (t - entry.changed >= QUIET_MS) return { pid, cpuMs: (entry.ticks * 1000) / TICKS_PER_SECOND, quietAt: entry.changed };
    }
    if (Date.now() > deadline) throw new Error("bench: no new spare went warm");
    await sleep(20);
  }
}

function medianMemory(reads: Memory[]): Memory {
  return { rssKb: median(reads.map((m) => m.rssKb)), pssKb: median(reads.map((m) => m.pssKb)), ussKb: median(reads.map((m) => m.ussKb)) };
}

export async function measureLight(ctx: Context): Promise<LightResults> {
  const extension = ctx.project.write("light-extension.ts", "export function _PG_init(): void {\n  // no workers: the idle postmaster and its spares\n}\n");
  const pm = await CliPostmaster.start(ctx.project, [extension], ["--no-database", "--max-worker-processes", "8"]);
  const client = await ctx.bgw.connect(pm.socket);
  const shapesUp: ChildProcess[] = [];
  try {
    // The idle postmaster: its start-up's spares booted, then settled.
    await pm.sparesWarm(120_000);
    await sleep(ctx.sizes.lightSettleSeconds * 1000);
    const spares = pm.children().filter((child) => child.spare).map((child) => child.pid);
    const report = await client.statusReport();
    const statusSpares = Object.fromEntries(Object.entries(report.postmaster).filter(([key]) => /spare/i.test(key)));
    const idlePostmaster: IdlePostmaster = {
      tree: treeMemory(pm.pid),
      postmaster: memoryOf(pm.pid)!,
      spares: spares.length,
      spareMemory: spares.map((pid) => memoryOf(pid)).filter((m): m is Memory => m !== undefined),
      statusSpares,
    };
    progress(`light: idle postmaster, ${spares.length} spare(s), tree PSS ${(idlePostmaster.tree.pssKb / 1024).toFixed(1)} MB`);

    // Boots: a launch takes the warm spare; its replacement boots with the `.ts` library to preload. Each
    // sample is interleaved with `node -e 0` and one process of each shape, so that load weighs alike.
    const spareBootCpuMs: number[] = [];
    const spareBootWallMs: number[] = [];
    const nodeE0: number[] = [];
    const shapeCpuMs = Object.fromEntries(SHAPES.map((shape) => [shape, [] as number[]])) as Record<Shape, number[]>;
    const shapeReadyMs = Object.fromEntries(SHAPES.map((shape) => [shape, [] as number[]])) as Record<Shape, number[]>;
    const launch = async (): Promise<{ worker: Awaited<ReturnType<typeof client.loadDynamic>>; pid: number; spare: { pid: number; cpuMs: number; quietAt: number } }> => {
      const before = new Set(pm.children().map((child) => child.pid));
      const builder = new ctx.bgw.BackgroundWorkerBuilder("light idle").setLibrary(ctx.libraries.idleTs).setFunction("idle");
      const worker = await client.loadDynamic(builder);
      const pid = await worker.waitForStartup();
      const spare = await newWarmSpare(pm, before);
      return { worker, pid, spare };
    };
    // One launch first: the library's first import (and compilation) is not a boot.
    const first = await launch();
    await first.worker.terminate().waitForShutdown();
    for (let i = 0; i < ctx.sizes.lightSamples; i++) {
      await sleep(300);
      const { worker, spare } = await launch();
      spareBootCpuMs.push(spare.cpuMs);
      spareBootWallMs.push(spare.quietAt - startedAt(spare.pid));
      await worker.terminate().waitForShutdown();
      await sleep(200);
      nodeE0.push(await nodeE0CpuMs());
      for (const shape of SHAPES) {
        await sleep(100);
        const { child, cpuMs, readyMs } = await startShape(ctx, shape);
        shapeCpuMs[shape].push(cpuMs);
        shapeReadyMs[shape].push(readyMs);
        await stopShape(child);
      }
      progress(`light: boot ${i + 1}/${ctx.sizes.lightSamples}: spare ${spare.cpuMs} ms of CPU, node -e 0 ${nodeE0.at(-1)!.toFixed(0)} ms`);
    }

    // Idle memory: one idle `.ts` worker, its replacement spare warm, and the shapes beside them.
    const { pid: workerPid, spare } = await launch();
    for (const shape of SHAPES) shapesUp.push((await startShape(ctx, shape)).child);
    await sleep(1_500 + ctx.sizes.lightSettleSeconds * 1000);
    const reads: { worker: Memory; spare: Memory; postmaster: Memory; shapes: Memory[] }[] = [];
    for (let i = 0; i < 5; i++) {
      const shapes = shapesUp.map((child) => memoryOf(child.pid!)!);
      reads.push({ worker: memoryOf(workerPid)!, spare: memoryOf(spare.pid)!, postmaster: memoryOf(pm.pid)!, shapes });
      await sleep(400);
    }
    const threads = { worker: threadsOf(workerPid), spare: threadsOf(spare.pid), shapes: Object.fromEntries(SHAPES.map((shape, i) => [shape, threadsOf(shapesUp[i]!.pid!)])) as Record<Shape, number> };
    if (!isSpare(spare.pid)) throw new Error("bench: the spare measured beside the worker is no longer a spare");
    return {
      node: process.version,
      inThreadHooks: typeof (nodeModule as { registerHooks?: unknown }).registerHooks === "function",
      idlePostmaster,
      spareBootCpuMs,
      spareBootWallMs,
      nodeE0CpuMs: nodeE0,
      shapeCpuMs,
      shapeReadyMs,
      threads,
      memory: {
        worker: medianMemory(reads.map((r) => r.worker)),
        spare: medianMemory(reads.map((r) => r.spare)),
        postmaster: medianMemory(reads.map((r) => r.postmaster)),
        shapes: Object.fromEntries(SHAPES.map((shape, i) => [shape, medianMemory(reads.map((r) => r.shapes[i]!))])) as Record<Shape, Memory>,
      },
    };
  } finally {
    await Promise.all(shapesUp.map(stopShape));
    await client.close();
    await pm.stop();
  }
}
