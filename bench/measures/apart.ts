/**
 * The figures that explain others, measured in plain Node processes shaped as a worker process is
 * (peers/node.mjs), so that every figure docs/performance.md quotes comes from the run:
 *
 *   esbuild's first start   a fresh process with tsx registered and warmed as a spare's is imports a `.ts` file
 *                           never seen, then a second one: the difference is what a `.ts` first launch pays
 *                           once per process (esbuild's service, a thread and a process, starting), and the
 *                           service process's RSS (launch group)
 *   process exit            from `process.exit()` in a child (its last line) to the parent's 'exit' event, for
 *                           a bare `node` and for one with tsx's loader thread and a worker thread, as a worker
 *                           has: what a restart pays before the postmaster even sees the exit (restart group)
 *   memory shapes           RSS and PSS of idle processes: bare, with `import "bgworker"`, with tsx, with a
 *                           worker thread (scale group, beside the idle workers)
 */
import { execFile, fork, spawn } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import type { Context } from "../lib/context.js";
import { pssKb, statusField } from "../lib/postmaster.js";
import { REPO } from "../lib/project.js";
import { now, sleep } from "../lib/stats.js";

const run = promisify(execFile);
const PEER = join(REPO, "bench", "peers", "node.mjs");

function plainEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  return env;
}

export interface EsbuildResults {
  /** First `.ts` import in the process minus the second: esbuild's service starting, with the first transform's extra. */
  readonly firstStartMs: number[];
  readonly firstImportMs: number[];
  readonly secondImportMs: number[];
  readonly serviceRssKb: number[];
  /** Samples dropped because the service was already running before the first import (never expected). */
  readonly dropped: number;
}

export async function measureEsbuildFirstStart(ctx: Context): Promise<EsbuildResults> {
  const dir = join(ctx.project.dir, "apart");
  mkdirSync(dir, { recursive: true });
  const results: EsbuildResults = { firstStartMs: [], firstImportMs: [], secondImportMs: [], serviceRssKb: [], dropped: 0 };
  let dropped = 0;
  for (let i = 0; i < ctx.sizes.esbuildStarts; i++) {
    await sleep(200);
    const { stdout } = await run(process.execPath, [PEER, "esbuild", dir, `${i}-${Date.now().toString(36)}`], { cwd: ctx.project.dir, env: plainEnv() });
    const sample = JSON.parse(stdout.trim().split("\n").pop()!) as { firstMs: number; secondMs: number; esbuildBefore: boolean; esbuildRssKb: number | null };
    if (sample.esbuildBefore) {
      dropped += 1;
      continue;
    }
    results.firstImportMs.push(sample.firstMs);
    results.secondImportMs.push(sample.secondMs);
    results.firstStartMs.push(sample.firstMs - sample.secondMs);
    if (sample.esbuildRssKb !== null) results.serviceRssKb.push(sample.esbuildRssKb);
  }
  return { ...results, dropped };
}

export interface ExitResults {
  /** A bare `node`. */
  readonly bareMs: number[];
  /** Shaped as an idle worker is: the package imported and a `.ts` library loaded as a spare loads it. */
  readonly workerShapedMs: number[];
}

/** One child: shaped, its `process.exit()` to the parent's 'exit' event. */
async function exitOnce(ctx: Context, shape: string): Promise<number> {
  const file = ctx.project.reportFile();
  const env = { ...plainEnv(), BENCH_LIBRARY: ctx.libraries.idleTs };
  const child = fork(PEER, ["exit", shape, file], { cwd: ctx.project.dir, env, execArgv: [], stdio: ["ignore", "ignore", "inherit", "ipc"] });
  const exitedAt = await new Promise<number>((resolve) => child.once("exit", () => resolve(now())));
  const line = readFileSync(file, "utf8").trim();
  return exitedAt - Number(line);
}

export async function measureProcessExit(ctx: Context): Promise<ExitResults> {
  const results: ExitResults = { bareMs: [], workerShapedMs: [] };
  // Interleaved, so that the load of the machine weighs alike on both.
  for (let i = 0; i < ctx.sizes.exits; i++) {
    await sleep(100);
    results.bareMs.push(await exitOnce(ctx, "bare"));
    await sleep(100);
    results.workerShapedMs.push(await exitOnce(ctx, "package,library"));
  }
  return results;
}

export interface MemoryShape {
  readonly rssKb: number;
  readonly pssKb: number;
}

/** Idle processes of each shape, side by side (so that they share Node's pages alike), once settled. */
export async function measureMemoryShapes(): Promise<Record<"bare" | "package" | "tsx" | "thread", MemoryShape>> {
  const shapes = ["bare", "package", "tsx", "thread"] as const;
  const children = shapes.map((shape) => spawn(process.execPath, [PEER, "idle", shape], { cwd: REPO, env: plainEnv(), stdio: ["ignore", "pipe", "inherit"] }));
  try {
    await Promise.all(
      children.map(
        (child) =>
          new Promise<void>((resolve, reject) => {
            createInterface({ input: child.stdout! }).on("line", (line) => line === "ready" && resolve());
            child.once("exit", () => reject(new Error("bench: a memory-shape process exited early")));
          }),
      ),
    );
    await sleep(1_500);
    const read = (pid: number): MemoryShape => ({ rssKb: statusField(pid, "VmRSS"), pssKb: pssKb(pid) });
    return Object.fromEntries(shapes.map((shape, i) => [shape, read(children[i]!.pid!)])) as Record<(typeof shapes)[number], MemoryShape>;
  } finally {
    for (const child of children) child.kill("SIGKILL");
  }
}
