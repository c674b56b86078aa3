/**
 * The benchmark (`npm run bench`, `npm run bench -- --quick`; never part of `npm test`; asserts nothing about
 * time). It measures what users run: the built package (`dist/`), a postmaster started with the CLI
 * (`node dist/cli/main.js start`) in a plain `node` process, driven from here over its control socket with
 * `import "bgworker"` of the built package, and worker libraries in a user's project in a temp dir, outside
 * this package. Every figure is set against a peer measured in the same run on the same machine.
 *
 * The groups run in this order: first those that need a quiet machine, then those that load it heavily:
 *
 *   launch    dynamic launch to Started (.ts/.js, first/repeat) vs cold fork, PM2's start; esbuild's first
 *             start in a process (measures/launch.ts, measures/apart.ts)
 *   restart   restart time 0, exit to replacement running, vs PM2 restart_delay 0; `process.exit()` to the
 *             parent's 'exit' event, bare and worker-shaped (measures/restart.ts, measures/apart.ts)
 *   latch     latch wake-up vs process.send and a raw futex (measures/latch.ts)
 *   light     what a worker process costs against a bare `node` on the same Node line: an idle worker's PSS,
 *             a runner's boot CPU against `node -e 0`, both broken down by part (processes shaped as the
 *             parts of a worker); an idle postmaster's tree and spares (measures/light.ts); it also runs
 *             the scale group's many-workers rows
 *   database  PostgreSQL's parallel worker; SPI first query; SPI overhead vs pg, postgres.js (measures/database.ts)
 *   inserver  in-server mode on a throwaway cluster with the extension installed (`bgworker pg-install`): SPI
 *             `SELECT 1` and a 1,000-row select vs server-side SPI, out-of-server SPI and pg over the Unix
 *             socket; bgworker.launch vs a C dynamic worker launch and a bare node start; latch wake-up
 *             (measures/inserver.ts); skipped, saying why, without the server's headers or write access
 *   burst     50 launches at once (quick: 12), the pool refilling (measures/burst.ts)
 *   scale     many static workers: start, RSS, idle CPU, status; launch/terminate cycles (measures/scale.ts);
 *             200 idle static `.ts` workers (and 1,000, full run only) to all running and their tree's PSS,
 *             beside as many bare `node` forked at once (the floor) and PM2 starting as many idle scripts
 *             (measures/many.ts; run by the light group too)
 *
 * Before the first group, the database, the burst and the scale groups, the bench waits (bounded) for the
 * machine to go quiet (lib/quiet.ts). Prints a table of medians, p99 and ratios, the facts, and the same as
 * markdown for docs/performance.md; writes bench/results/latest.json (or --out FILE). `--only a,b` runs some
 * groups (the file then holds only those). The bench runs on the `node` it is started with (any supported
 * line: put another first on PATH) and labels every output with its version.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { FULL, QUICK, type Context, type Sizes } from "./lib/context.js";
import { writeLibraries } from "./lib/libraries.js";
import { CliPostmaster } from "./lib/postmaster.js";
import { builtPackage, Project, REPO } from "./lib/project.js";
import { waitQuiet, type Quiet } from "./lib/quiet.js";
import { addFact, addRow, allFacts, allRows, markdownTable, orderRows, printTable, progress } from "./lib/report.js";
import { median, pairedRatio, round, summarize, type Summary } from "./lib/stats.js";
import { measureEsbuildFirstStart, measureProcessExit } from "./measures/apart.js";
import { measureBurst } from "./measures/burst.js";
import { measureDatabase, type DatabaseResults } from "./measures/database.js";
import { inServerRows, measureInServer, type InServerResults } from "./measures/inserver.js";
import { measureLatch } from "./measures/latch.js";
import { measureLaunch, type LaunchResults } from "./measures/launch.js";
import { measureLight, SHAPES, type LightResults, type Shape } from "./measures/light.js";
import { measureMany, type ManyResults } from "./measures/many.js";
import { measureRestart } from "./measures/restart.js";
import { measureScale, type ScaleResults } from "./measures/scale.js";

const GROUPS = ["launch", "restart", "latch", "light", "database", "inserver", "burst", "scale"] as const;

const { values } = parseArgs({ options: { quick: { type: "boolean" }, only: { type: "string" }, out: { type: "string" } } });
const quick = values.quick === true;
const only = new Set(values.only === undefined ? GROUPS : values.only.split(","));
for (const group of only) if (!(GROUPS as readonly string[]).includes(group)) throw new Error(`bench: no group "${group}" (groups: ${GROUPS.join(", ")})`);
const OUT = values.out ?? join(REPO, "bench", "results", "latest.json");

const ratio = (peer: Summary, ours: Summary): number => peer.p50 / ours.p50;
const mb = (kb: number): number => round(kb / 1024, 1);

function launchRows(launch: LaunchResults, database: DatabaseResults | undefined): void {
  const configs: [string, number[]][] = [
    [".ts library, first launch", launch.firstTs],
    [".ts library, repeat", launch.repeatTs],
    [".js library, first launch", launch.firstJs],
    [".js library, repeat", launch.repeatJs],
  ];
  for (const [label, samples] of configs) {
    const s = summarize(samples);
    addRow({ group: "launch", measure: `launch -> Started, ${label}`, unit: "ms", bgworker: s, target: "p50 <= 5 ms, p99 <= 20 ms", met: s.p50 <= 5 && s.p99 <= 20 });
  }
  const all = summarize(configs.flatMap(([, samples]) => samples));
  if (database !== undefined) {
    const pg = summarize(database.parallelWorkerMs);
    addRow({ group: "launch", measure: "launch -> Started (all four)", unit: "ms", bgworker: all, peer: pg, peerLabel: "PostgreSQL parallel worker launch", ratio: ratio(pg, all), target: ">= 3x faster", met: ratio(pg, all) >= 3 });
  }
  const fork = summarize(launch.coldFork);
  addRow({ group: "launch", measure: "launch -> Started (all four)", unit: "ms", bgworker: all, peer: fork, peerLabel: "cold child_process.fork to first message", ratio: ratio(fork, all), target: ">= 20x faster", met: ratio(fork, all) >= 20 });
  const pm2 = summarize(launch.pm2);
  addRow({ group: "launch", measure: "launch -> Started (all four)", unit: "ms", bgworker: all, peer: pm2, peerLabel: "PM2 programmatic start to script running", ratio: ratio(pm2, all), target: "faster", met: ratio(pm2, all) > 1 });
  addFact("fork", { callMs: roundSummary(summarize(launch.forkCallMs)), forkerRssMb: mb(launch.forkerRssKb) });
}

const PEER_LABELS = {
  pg: "raw pg, same statements",
  pgPrepared: "pg, named prepared statement",
  postgres: "postgres.js, same statements",
  postgresUnsafe: "postgres.js, sql.unsafe(text, params) as SPI would call it",
} as const;

function databaseRows(database: DatabaseResults, sizes: Sizes): void {
  const pg = summarize(database.parallelWorkerMs);
  const preopened = summarize(database.spiFirstPreopenedMs);
  const fresh = summarize(database.spiFirstFreshMs);
  addRow({ group: "database", measure: "SPI worker: launch -> first query answered", unit: "ms", bgworker: preopened, peer: pg, peerLabel: "PostgreSQL parallel worker to first tuple", ratio: ratio(pg, preopened), target: "no slower (ratio >= 1.0)", met: ratio(pg, preopened) >= 1 });
  addRow({ group: "database", measure: "SPI worker, new connection (another database)", unit: "ms", bgworker: fresh, peer: pg, peerLabel: "PostgreSQL parallel worker to first tuple", ratio: ratio(pg, fresh), note: `the pre-opened session saves ${(fresh.p50 - preopened.p50).toFixed(2)} ms at the median` });
  const { spi } = database.overhead;
  for (const [what, label, count] of [["selectsMs", "single-row selects", sizes.selects], ["transactionsMs", "small transactions", sizes.selects / 10]] as const) {
    const ours = summarize(spi[what]);
    for (const driver of ["pg", "pgPrepared", "postgres", "postgresUnsafe"] as const) {
      const peer = summarize(database.overhead[driver][what]);
      const target = driver === "pg" ? { target: "overhead <= 5%", met: ours.p50 <= peer.p50 * 1.05 } : {};
      addRow({ group: "database", measure: `SPI, ${count} ${label}`, unit: "ms", bgworker: ours, peer, peerLabel: PEER_LABELS[driver], ratio: ratio(peer, ours), ...target });
    }
  }
  addFact("postgresParallelQuery", { serialMs: roundSummary(summarize(database.serialQueryMs)), parallelMs: roundSummary(summarize(database.parallelQueryMs)) });
}

const finite = (value: number): boolean => Number.isFinite(value);
const one = (value: number): Summary => summarize(finite(value) ? [value] : []);

/** What the postmaster's status says of its spare pool, when it says anything. */
function statusSparesText(status: Record<string, unknown>): string {
  const pool = status.spares as { count?: number; ready?: number; target?: number; max?: number; pssBytes?: number } | undefined;
  if (pool === undefined || typeof pool !== "object") return "";
  const parts = [`${pool.count} spare(s)`, `${pool.ready} ready`, `target ${pool.target}`, `max ${pool.max}`];
  if (typeof pool.pssBytes === "number") parts.push(`${mb(pool.pssBytes / 1024)} MB PSS`);
  return `; status: ${parts.join(", ")}`;
}

/** The light group's rows: each figure of a worker process beside a bare `node` of the same line. */
function lightRows(light: LightResults): void {
  const { memory } = light;
  const bare = memory.shapes.bare;
  const overMb = mb(memory.worker.pssKb - bare.pssKb);
  addRow({
    group: "light",
    measure: "idle worker (.ts library): PSS",
    unit: "MB",
    bgworker: one(mb(memory.worker.pssKb)),
    peer: one(mb(bare.pssKb)),
    peerLabel: "bare `node -e`, idle with an IPC channel, same Node",
    ratio: bare.pssKb / memory.worker.pssKb,
    target: "<= the peer + 5 MB",
    met: memory.worker.pssKb - bare.pssKb <= 5 * 1024,
    note: `${overMb >= 0 ? "+" : ""}${overMb} MB over it; private (USS) ${mb(memory.worker.ussKb)} MB against ${mb(bare.ussKb)} MB`,
  });
  const boot = summarize(light.spareBootCpuMs);
  const e0 = summarize(light.nodeE0CpuMs);
  addRow({
    group: "light",
    measure: "a runner's boot to warm spare (.ts library preloaded): CPU",
    unit: "ms",
    bgworker: boot,
    peer: e0,
    peerLabel: "`node -e 0`, user + sys, same Node",
    ratio: e0.p50 / boot.p50,
    target: "<= 2x the peer",
    met: boot.p50 <= 2 * e0.p50,
    note: `from /proc's 10 ms ticks; fork to warm ${median(light.spareBootWallMs).toFixed(0)} ms of wall clock`,
  });
  const idle = light.idlePostmaster;
  addRow({
    group: "light",
    measure: "idle postmaster, no workers, spares booted: the tree's PSS",
    unit: "MB",
    bgworker: one(mb(idle.tree.pssKb)),
    target: "< 150 MB",
    met: idle.tree.pssKb < 150 * 1024,
    note: `${idle.tree.processes} processes: the postmaster ${mb(idle.postmaster.pssKb)} MB, ${idle.spares} spare(s) of ${idle.spareMemory.map((m) => mb(m.pssKb)).join(", ")} MB${statusSparesText(idle.statusSpares)}`,
  });
  const shapes = Object.fromEntries(SHAPES.map((shape) => [shape, { pssMb: mb(memory.shapes[shape].pssKb), ussMb: mb(memory.shapes[shape].ussKb), rssMb: mb(memory.shapes[shape].rssKb), cpuMs: roundSummary(summarize(light.shapeCpuMs[shape])), readyMs: roundSummary(summarize(light.shapeReadyMs[shape])) }]));
  const part = (a: Shape | "spare" | "worker", b: Shape | "spare"): { pssMb: number; ussMb: number; cpuMs?: number } => {
    const m = (k: Shape | "spare" | "worker"): { pssKb: number; ussKb: number } => (k === "spare" ? memory.spare : k === "worker" ? memory.worker : memory.shapes[k]);
    const cpu = (k: Shape | "spare" | "worker"): number | undefined => (k === "spare" ? median(light.spareBootCpuMs) : k === "worker" ? undefined : median(light.shapeCpuMs[k]));
    const ca = cpu(a);
    const cb = cpu(b);
    return { pssMb: mb(m(a).pssKb - m(b).pssKb), ussMb: mb(m(a).ussKb - m(b).ussKb), ...(ca !== undefined && cb !== undefined ? { cpuMs: round(ca - cb, 1) } : {}) };
  };
  addFact("light", {
    node: light.node,
    inThreadHooks: light.inThreadHooks,
    nodeE0CpuMs: roundSummary(e0),
    spareBootCpuMs: roundSummary(boot),
    spareBootWallMs: roundSummary(summarize(light.spareBootWallMs)),
    worker: { pssMb: mb(memory.worker.pssKb), ussMb: mb(memory.worker.ussKb), rssMb: mb(memory.worker.rssKb) },
    spare: { pssMb: mb(memory.spare.pssKb), ussMb: mb(memory.spare.ussKb), rssMb: mb(memory.spare.rssKb) },
    postmasterBesideOneWorker: { pssMb: mb(memory.postmaster.pssKb), ussMb: mb(memory.postmaster.ussKb), rssMb: mb(memory.postmaster.rssKb) },
    shapes,
    threads: light.threads,
    /** What each part adds, in the runner's order (each over the one before), then the extras over an ESM entry. */
    parts: {
      esmEntry: part("esm", "bare"),
      importBgworker: part("package", "esm"),
      tsLibrary: part("library", "package"),
      runnerItself: part("spare", "library"),
      becomingTheWorker: part("worker", "spare"),
      typeScriptHooks: part("typescript", "esm"),
      pg: part("pg", "esm"),
      tsx: part("tsx", "esm"),
      workerThread: part("thread", "esm"),
    },
    idlePostmaster: {
      treePssMb: mb(idle.tree.pssKb),
      treeUssMb: mb(idle.tree.ussKb),
      processes: idle.tree.processes,
      postmasterPssMb: mb(idle.postmaster.pssKb),
      spares: idle.spares,
      sparePssMb: idle.spareMemory.map((m) => mb(m.pssKb)),
      status: idle.statusSpares,
    },
  });
}

/**
 * With several rounds: every round's time of both sides (s) and each round's ratio. The row's times are each
 * side's median round; its ratio, and the target, are the median of the rounds' own ratios (`pairedRatio`).
 */
function roundsNote(ours: ManyResults["bgworker"], floor: ManyResults["floor"]): string | undefined {
  if (ours.rounds === undefined || floor.rounds === undefined) return undefined;
  const seconds = (rounds: readonly number[]): string => rounds.map((ms) => (ms / 1000).toFixed(2)).join(", ");
  const ratios = ours.rounds.map((ms, i) => `${(ms / floor.rounds![i]!).toFixed(2)}x`).join(", ");
  return (
    `${ours.rounds.length} rounds, the floor's and bgworker's alternating, each side's median round shown and the median of the rounds' ratios judged: ` +
    `bgworker ${seconds(ours.rounds)} s against the floor's ${seconds(floor.rounds)} s, ${ratios}`
  );
}

/** The many-workers rows (group scale): each size's time and tree memory beside the floor and PM2. */
function manyRows(runs: readonly ManyResults[], sizes: Sizes): void {
  for (const run of runs) {
    const n = run.count;
    const targeted = n === sizes.many[0];
    const ours = run.bgworker;
    const incomplete = ours.exited !== undefined && ours.exited.length > 0;
    const timeNote = [
      ours.skipped,
      incomplete ? `only ${ours.running} of ${n} running: ${ours.exited!.length} exited (${ours.exited!.join("; ")})` : undefined,
      ours.wallMs === undefined ? undefined : `${(ours.wallMs / 1000).toFixed(2)} s from the CLI's spawn`,
    ]
      .filter(Boolean)
      .join("; ");
    const peers: [string, ManyResults["floor"] | undefined, boolean][] = [
      [`${n} bare \`node\` forked at once, each to its first IPC message (floor)`, run.floor, targeted],
      [`PM2 starting ${n} idle scripts (one ecosystem)`, run.pm2, false],
    ];
    for (const [label, peer, withTarget] of peers) {
      if (peer === undefined) continue;
      const ratioOf = (a: number, b: number): number | undefined => (finite(a) && finite(b) ? a / b : undefined);
      // Rounds that alternated with this peer are judged pair by pair (roundsNote); one run by its two times.
      const paired = ours.rounds !== undefined && ours.rounds.length === peer.rounds?.length;
      const slowdown = paired ? pairedRatio(ours.rounds, peer.rounds) : (ratioOf(ours.allMs, peer.allMs) ?? Number.NaN);
      const note = [timeNote, paired ? roundsNote(ours, peer) : undefined].filter(Boolean).join("; ");
      addRow({
        group: "scale",
        measure: `${n} idle static .ts workers: start -> all running (from the postmaster's start)`,
        unit: "ms",
        bgworker: one(ours.allMs),
        peer: one(peer.allMs),
        peerLabel: peer.skipped === undefined ? label : `${label}: ${peer.skipped}`,
        ...(finite(slowdown) ? { ratio: 1 / slowdown } : {}),
        ...(withTarget ? { target: "<= 1.5x the floor", met: !incomplete && finite(slowdown) && slowdown <= 1.5 } : {}),
        ...(note === "" ? {} : { note }),
      });
      const oursKb = ours.memory?.pssKb ?? Number.NaN;
      const peerKb = peer.memory?.pssKb ?? Number.NaN;
      const memoryRatio = ratioOf(peerKb, oursKb);
      addRow({
        group: "scale",
        measure: `${n} idle static .ts workers: the whole tree's PSS`,
        unit: "MB",
        bgworker: one(mb(oursKb)),
        peer: one(mb(peerKb)),
        peerLabel: `${label}${peer.memory === undefined ? "" : `, ${peer.memory.processes} processes`}`,
        ...(memoryRatio === undefined ? {} : { ratio: memoryRatio }),
        ...(withTarget ? { target: "<= 1.5x the floor", met: finite(oursKb) && oursKb <= 1.5 * peerKb } : {}),
        ...(ours.memory === undefined ? {} : { note: `${ours.memory.processes} processes (${ours.spares ?? 0} spares), ${mb(oursKb / ours.memory.processes)} MB a process` }),
      });
    }
    // What the start cost in CPU, a process on average, beside the floor's: the time follows it on 2 CPUs.
    if (ours.cpu !== undefined && run.floor.cpu !== undefined) {
      addRow({
        group: "scale",
        measure: `${n} idle static .ts workers: CPU a worker by the time all run (user + sys)`,
        unit: "ms",
        bgworker: one(round(ours.cpu.perChildMs, 1)),
        peer: one(round(run.floor.cpu.perChildMs, 1)),
        peerLabel: `${n} bare \`node\` forked at once, a child by its first IPC message (floor)`,
        ratio: run.floor.cpu.perChildMs / ours.cpu.perChildMs,
        note: `the postmaster ${round(ours.cpu.parentMs, 0)} ms for ${ours.cpu.children} children; the forker ${round(run.floor.cpu.parentMs, 0)} ms for ${run.floor.cpu.children}`,
      });
    }
  }
  addFact(
    "many",
    runs.map((run) => ({
      count: run.count,
      floor: { allMs: round(run.floor.allMs, 0), rounds: run.floor.rounds, forkCallsMs: round(run.floor.forkCallsMs ?? Number.NaN, 0), cpu: run.floor.cpu, treePssMb: mb(run.floor.memory?.pssKb ?? Number.NaN), processes: run.floor.memory?.processes, skipped: run.floor.skipped },
      bgworker: { allMs: round(run.bgworker.allMs, 0), rounds: run.bgworker.rounds, wallMs: round(run.bgworker.wallMs ?? Number.NaN, 0), cpu: run.bgworker.cpu, treePssMb: mb(run.bgworker.memory?.pssKb ?? Number.NaN), processes: run.bgworker.memory?.processes, spares: run.bgworker.spares, stopMs: round(run.bgworker.stopMs ?? Number.NaN, 0), running: run.bgworker.running, exited: run.bgworker.exited, skipped: run.bgworker.skipped },
      ...(run.pm2 === undefined ? {} : { pm2: { allMs: round(run.pm2.allMs, 0), treePssMb: mb(run.pm2.memory?.pssKb ?? Number.NaN), processes: run.pm2.memory?.processes, skipped: run.pm2.skipped } }),
    })),
  );
}

/**
 * The cycles' tail: which launches were slow (over five times the median), and what the runner that became the
 * worker was doing when each began: forked for the launch (it did not exist yet), a spare still booting (it
 * used more than a tick of CPU before Started), or a warm spare (what is left is the postmaster or the machine).
 */
function cycleTail(scale: ScaleResults): Record<string, unknown> {
  const p50 = median(scale.cycleLaunchMs);
  const thresholdMs = Math.max(5 * p50, 20);
  const kind = (i: number): "forked" | "booting" | "warm" =>
    scale.cycleRunnerAgeMs[i]! <= 10 ? "forked" : scale.cycleRunnerCpuMs[i]! > 10 ? "booting" : "warm";
  const cycles = scale.cycleLaunchMs.map((ms, i) => ({ cycle: i, ms, runner: kind(i), sparesListed: scale.cycleSpares[i]!, runnerAgeMs: scale.cycleRunnerAgeMs[i]!, runnerCpuMs: scale.cycleRunnerCpuMs[i]! }));
  const count = (list: typeof cycles): Record<string, number> => ({
    forked: list.filter((c) => c.runner === "forked").length,
    bootingSpare: list.filter((c) => c.runner === "booting").length,
    warmSpare: list.filter((c) => c.runner === "warm").length,
    noSpareListed: list.filter((c) => c.sparesListed === 0).length,
  });
  const slow = cycles.filter((c) => c.ms > thresholdMs);
  const fast = cycles.filter((c) => c.ms <= thresholdMs);
  return {
    thresholdMs: round(thresholdMs, 1),
    cycles: cycles.length,
    slow: slow.length,
    slowBy: count(slow),
    fastBy: count(fast),
    slowMedianMs: round(median(slow.map((c) => c.ms)), 1),
    slowMedianRunnerCpuMs: round(median(slow.map((c) => c.runnerCpuMs)), 0),
    slowIndices: slow.map((c) => c.cycle),
    slowest: [...slow].sort((a, b) => b.ms - a.ms).slice(0, 10).map((c) => ({ ...c, ms: round(c.ms, 1), runnerAgeMs: round(c.runnerAgeMs, 0) })),
  };
}

function cycleTailNote(tail: Record<string, unknown>): string {
  const by = tail.slowBy as Record<string, number>;
  return `${tail.slow} slower than ${tail.thresholdMs} ms: ${by.forked} took a runner forked for the launch, ${by.bootingSpare} a spare still booting, ${by.warmSpare} a warm spare`;
}

/** The facts as sentences for docs/performance.md ("Last run"), each naming where its figure comes from. */
function factLines(facts: Record<string, any>): string[] {
  const f = (s: Summary | undefined, unit = "ms"): string => (s === undefined ? "-" : `${s.p50 < 10 ? s.p50.toFixed(2) : s.p50.toFixed(1)} ${unit} (p99 ${s.p99 < 10 ? s.p99.toFixed(2) : s.p99.toFixed(1)}, n ${s.n})`);
  const lines: string[] = [];
  if (facts.memory !== undefined) {
    const m = facts.memory;
    lines.push(`**Memory**: postmaster RSS ${m.postmasterRssMb} MB with ${m.staticWorkers} workers; an idle worker RSS ${m.idleWorkerRssMb} MB (PSS ${m.idleWorkerPssMb} MB) against a bare \`node\` doing nothing, RSS ${m.shapes.bare.rssMb} MB (PSS ${m.shapes.bare.pssMb} MB). Idle plain processes side by side, PSS over the bare one: \`import "bgworker"\` +${m.adds.package} MB, tsx registered +${m.adds.tsx} MB, one worker thread +${m.adds.thread} MB.`);
  }
  if (facts.light !== undefined) {
    const l = facts.light;
    const p = l.parts;
    const sign = (v: number): string => `${v >= 0 ? "+" : ""}${v}`;
    lines.push(
      `**Light workers** (Node ${l.node}, ${l.inThreadHooks ? "Node has in-thread module hooks" : "no in-thread module hooks: the package's hooks would run on Node's loader thread"}): an idle \`.ts\` worker PSS ${l.worker.pssMb} MB (USS ${l.worker.ussMb}), a warm spare ${l.spare.pssMb} MB (USS ${l.spare.ussMb}), a bare \`node -e\` with an IPC channel ${l.shapes.bare.pssMb} MB (USS ${l.shapes.bare.ussMb}). Part by part, PSS (CPU to ready): an ES module entry ${sign(p.esmEntry.pssMb)} MB (${sign(p.esmEntry.cpuMs)} ms), \`import "bgworker"\` ${sign(p.importBgworker.pssMb)} MB (${sign(p.importBgworker.cpuMs)} ms), the \`.ts\` library as compiled files ${sign(p.tsLibrary.pssMb)} MB (${sign(p.tsLibrary.cpuMs)} ms), the runner itself (a spare against that shape) ${sign(p.runnerItself.pssMb)} MB (${sign(p.runnerItself.cpuMs)} ms), becoming the worker ${sign(p.becomingTheWorker.pssMb)} MB; beside them, over an ES module entry: the package's TypeScript module hooks (installed only for a library that needs them) ${sign(p.typeScriptHooks.pssMb)} MB (${sign(p.typeScriptHooks.cpuMs)} ms), \`pg\` ${sign(p.pg.pssMb)} MB (${sign(p.pg.cpuMs)} ms), tsx's loader ${sign(p.tsx.pssMb)} MB (${sign(p.tsx.cpuMs)} ms), a worker thread ${sign(p.workerThread.pssMb)} MB. CPU to ready: bare ${f(l.shapes.bare.cpuMs)}; \`node -e 0\` to its exit ${f(l.nodeE0CpuMs)}; a spare's boot ${f(l.spareBootCpuMs)}, ${f(l.spareBootWallMs)} of wall clock from its fork to warm. Idle postmaster with no workers: ${l.idlePostmaster.treePssMb} MB PSS for ${l.idlePostmaster.processes} processes (postmaster ${l.idlePostmaster.postmasterPssMb} MB, ${l.idlePostmaster.spares} spare(s) of ${l.idlePostmaster.sparePssMb.join(", ")} MB).`,
    );
  }
  if (facts.many !== undefined) {
    for (const m of facts.many as any[]) {
      const side = (name: string, s: any): string => (s === undefined ? "" : s.skipped !== undefined && !Number.isFinite(s.allMs) ? `${name} ${s.skipped}` : `${name} ${(s.allMs / 1000).toFixed(2)} s, ${s.treePssMb} MB PSS (${s.processes} processes)`);
      const partial = m.bgworker.exited !== undefined && m.bgworker.exited.length > 0 ? ` (only ${m.bgworker.running} of ${m.count} running: ${m.bgworker.exited.join("; ")})` : "";
      lines.push(`**${m.count} at once**: ${[side("bgworker", m.bgworker) + partial, `${m.bgworker.wallMs !== undefined && Number.isFinite(m.bgworker.wallMs) ? `(${(m.bgworker.wallMs / 1000).toFixed(2)} s from the CLI's spawn; stopped in ${(m.bgworker.stopMs / 1000).toFixed(2)} s)` : ""}`, side("; bare-fork floor", m.floor), side("; PM2", m.pm2)].join(" ")}.`);
    }
  }
  if (facts.esbuildFirstStart !== undefined) {
    const e = facts.esbuildFirstStart;
    lines.push(`**esbuild's first start** in a process (a fresh \`node\` with tsx warmed as a spare's: its first \`.ts\` import never transformed, minus a second one): ${f(e.firstStartMs)}; the second import ${f(e.secondImportMs)}; the service process's RSS ${e.serviceRssMb} MB.`);
  }
  if (facts.fork !== undefined) lines.push(`**fork**: \`child_process.fork()\` itself blocks the forking process (the bench's, RSS ${facts.fork.forkerRssMb} MB) for ${f(facts.fork.callMs)}.`);
  if (facts.processExit !== undefined) {
    lines.push(`**process exit**: \`process.exit()\` to the parent's 'exit' event: a bare \`node\` ${f(facts.processExit.bareMs)}; shaped as an idle worker (the package and a \`.ts\` library loaded), ${f(facts.processExit.workerShapedMs)}: the part of a restart that is the old process's own end.`);
  }
  if (facts.postgresParallelQuery !== undefined) lines.push(`**PostgreSQL's query**: serial ${f(facts.postgresParallelQuery.serialMs)}, with one parallel worker ${f(facts.postgresParallelQuery.parallelMs)}.`);
  if (facts.burstRefill !== undefined) {
    const b = facts.burstRefill;
    lines.push(`**burst**: after the burst, the pool held its target of ${b.target} warm spares ${Number.isFinite(b.refilledMs) ? `${(b.refilledMs / 1000).toFixed(2)} s` : "not within 120 s"} after the last Started (${b.allStartedMs} ms after the burst began); ${b.sparesForkedDuringBurst} of them were forked while launches were still starting, the first ${b.firstSpareForkedMs} ms in; a spare's boot took ${f(b.spareBootCpuMs, "ms of CPU")}.`);
  }
  if (facts.cycleTail !== undefined) {
    const t = facts.cycleTail;
    lines.push(`**cycles**: of the launch/terminate cycles, ${t.slow} of ${t.cycles} slower than ${t.thresholdMs} ms (median of those ${t.slowMedianMs} ms): ${t.slowBy.forked} took a runner forked for the launch, ${t.slowBy.bootingSpare} a spare still booting (median ${t.slowMedianRunnerCpuMs} ms of CPU before Started), ${t.slowBy.warmSpare} a warm spare; ${t.slowBy.noSpareListed} began with no spare in the pool. Of the others, ${t.fastBy.warmSpare} took a warm spare.`);
  }
  if (facts.quiet !== undefined) {
    lines.push(`**quiet**: waits for a quiet machine (busy below 0.3 CPU): ${(facts.quiet as Quiet[]).map((q) => `before ${q.before} ${q.waitedSeconds} s${q.quiet ? "" : ` (bound reached, ${q.busyCpus} CPUs busy)`}`).join(", ")}.`);
  }
  return lines;
}

async function main(): Promise<void> {
  const began = Date.now();
  const loadAtStart = loadavg();
  const sizes = quick ? QUICK : FULL;
  const project = new Project();
  const ctx: Context = { project, libraries: writeLibraries(project), bgw: await builtPackage(), sizes, quick };
  const raw: Record<string, unknown> = {};
  const quiet: Quiet[] = [];
  const settle = async (before: string): Promise<void> => {
    const q = await waitQuiet(before, sizes.quietSeconds);
    quiet.push(q);
    progress(`${before}: machine ${q.quiet ? "quiet" : `still busy (${q.busyCpus} CPUs)`} after ${q.waitedSeconds} s`);
  };
  let launch: LaunchResults | undefined;
  let database: DatabaseResults | undefined;
  let inServer: InServerResults | undefined;
  progress(`${quick ? "quick" : "full"} run on Node ${process.version} (${process.execPath}); user project in ${project.dir}`);
  try {
    // Quiet-machine groups first.
    if (only.has("launch") || only.has("restart") || only.has("latch")) {
      await settle(only.has("launch") ? "launch" : only.has("restart") ? "restart" : "latch");
      const pm = await CliPostmaster.start(project, [ctx.libraries.extension], ["--no-database", "--max-worker-processes", "16"]);
      try {
        if (only.has("launch")) {
          progress("launch");
          launch = await measureLaunch(ctx, pm);
          raw.launch = launch;
          progress("launch: esbuild's first start in a process");
          const esbuild = await measureEsbuildFirstStart(ctx);
          raw.esbuild = esbuild;
          addFact("esbuildFirstStart", {
            firstStartMs: roundSummary(summarize(esbuild.firstStartMs)),
            firstImportMs: roundSummary(summarize(esbuild.firstImportMs)),
            secondImportMs: roundSummary(summarize(esbuild.secondImportMs)),
            serviceRssMb: mb(median(esbuild.serviceRssKb)),
            dropped: esbuild.dropped,
          });
        }
        if (only.has("restart")) {
          progress("restart");
          const restart = await measureRestart(ctx, pm);
          progress("restart: process.exit() to the parent's 'exit' event");
          const exits = await measureProcessExit(ctx);
          raw.restart = { ...restart, exits };
          const ours = summarize(restart.bgworker);
          const peer = summarize(restart.pm2);
          addRow({ group: "restart", measure: "restart time 0: exit -> replacement running", unit: "ms", bgworker: ours, peer, peerLabel: "PM2, restart_delay 0", ratio: ratio(peer, ours), target: "p50 <= 10 ms", met: ours.p50 <= 10 });
          addFact("processExit", { bareMs: roundSummary(summarize(exits.bareMs)), workerShapedMs: roundSummary(summarize(exits.workerShapedMs)) });
        }
        if (only.has("latch")) {
          progress("latch");
          const latch = await measureLatch(ctx, pm);
          raw.latch = latch;
          const ours = summarize(latch.latchUs);
          addRow({ group: "latch", measure: "setLatch -> waitLatch wake-up, across processes", unit: "us", bgworker: ours, peer: summarize(latch.ipcUs), peerLabel: "process.send, one way", ratio: ratio(summarize(latch.ipcUs), ours) });
          addRow({ group: "latch", measure: "setLatch -> waitLatch wake-up, across processes", unit: "us", bgworker: ours, peer: summarize(latch.futexUs), peerLabel: "raw futex wake, same two processes (floor)", ratio: ratio(summarize(latch.futexUs), ours) });
        }
      } finally {
        await pm.stop();
      }
    }
    let light: LightResults | undefined;
    if (only.has("light")) {
      await settle("light");
      progress(`light (Node ${process.version})`);
      light = await measureLight(ctx);
      raw.light = light;
      lightRows(light);
    }
    if (only.has("database")) {
      await settle("database");
      progress("database");
      database = await measureDatabase(ctx);
      raw.database = database;
      databaseRows(database, sizes);
    }
    if (only.has("inserver")) {
      await settle("inserver");
      progress("inserver");
      inServer = await measureInServer(ctx);
      raw.inserver = inServer;
      inServerRows(inServer);
    }
    if (launch !== undefined) launchRows(launch, database);
    // Then the groups that load the machine heavily, each after the machine has gone quiet again.
    if (only.has("burst")) {
      await settle("burst");
      progress("burst");
      const pm = await CliPostmaster.start(project, [ctx.libraries.extension], ["--no-database", "--max-worker-processes", String(sizes.burst + 14)]);
      try {
        const burst = await measureBurst(ctx, pm);
        raw.burst = burst;
        const refilled = Number.isFinite(burst.refilledMs) ? `refilled to ${burst.sparesAfter} warm spares ${(burst.refilledMs / 1000).toFixed(2)} s after the last Started` : `not refilled to ${burst.target} warm spares within 120 s`;
        addRow({ group: "burst", measure: `burst of ${burst.started} launches at once -> each Started`, unit: "ms", bgworker: summarize(burst.launchMs), note: `${burst.started}/${sizes.burst} Started, all within ${burst.allStartedMs.toFixed(0)} ms; spares ${burst.sparesBefore} before; ${refilled}` });
        addFact("burstRefill", {
          target: burst.target,
          sparesAfter: burst.sparesAfter,
          refilledMs: round(burst.refilledMs, 0),
          spareBootCpuMs: roundSummary(summarize(burst.spareBootCpuMs)),
          allStartedMs: round(burst.allStartedMs, 0),
          /** The refilled spares forked while the burst's launches were still starting. */
          sparesForkedDuringBurst: burst.spareForkedMs.filter((ms) => ms < burst.allStartedMs).length,
          firstSpareForkedMs: round(Math.min(...burst.spareForkedMs), 0),
        });
      } finally {
        await pm.stop();
      }
    }
    if (only.has("scale")) {
      await settle("scale");
      progress("scale");
      const scale = await measureScale(ctx);
      raw.scale = scale;
      const tail = cycleTail(scale);
      addRow({ group: "scale", measure: `${scale.workers} static workers: start -> all running`, unit: "ms", bgworker: summarize([scale.allRunningMs]) });
      addRow({ group: "scale", measure: `status over the socket, ${scale.workers} workers`, unit: "ms", bgworker: summarize(scale.statusMs), target: "< 50 ms", met: median(scale.statusMs) < 50, note: `the CLI's \`bgworker status\` (a Node start included): ${median(scale.cliStatusMs).toFixed(0)} ms` });
      addRow({ group: "scale", measure: `idle CPU of the whole tree over ${scale.idleSeconds.toFixed(0)} s`, unit: "%", bgworker: summarize([scale.idleCpuPercent]), target: "< 1% of one CPU", met: scale.idleCpuPercent < 1 });
      addRow({ group: "scale", measure: `${scale.cycles} sequential launch/terminate cycles: launch -> Started`, unit: "ms", bgworker: summarize(scale.cycleLaunchMs), note: `postmaster RSS ${(scale.rssKb.start / 1024).toFixed(1)} -> ${(scale.rssKb.end / 1024).toFixed(1)} MB, open fds ${scale.fds.start} -> ${scale.fds.end}, ${scale.cyclesSeconds.toFixed(0)} s; ${cycleTailNote(tail)}` });
      const shapes = Object.fromEntries(Object.entries(scale.shapes).map(([name, shape]) => [name, { rssMb: mb(shape.rssKb), pssMb: mb(shape.pssKb) }]));
      addFact("memory", {
        staticWorkers: scale.workers,
        postmasterRssMb: mb(scale.postmasterRssKb),
        idleWorkerRssMb: mb(scale.workerRssKb),
        idleWorkerPssMb: mb(scale.workerPssKb),
        shapes,
        /** PSS each part adds to a bare node, from the side-by-side idle processes. */
        adds: Object.fromEntries((["package", "tsx", "thread"] as const).map((name) => [name, mb(scale.shapes[name].pssKb - scale.shapes.bare.pssKb)])),
      });
      addFact("cycleTail", tail);
    }
    if (only.has("scale") || only.has("light")) {
      // Per process, for the memory guard of each size: what was measured last, or a heavy first guess.
      const kbEach = { floor: light?.memory.shapes.bare.pssKb ?? 12 * 1024, bgworker: light?.memory.worker.pssKb ?? 60 * 1024, pm2: 60 * 1024 };
      const runs: ManyResults[] = [];
      for (const count of sizes.many) {
        progress(`scale: ${count} idle workers at once, beside the floor and PM2`);
        const run = await measureMany(ctx, count, kbEach, count === sizes.many[0] ? sizes.manyRounds : 1);
        runs.push(run);
        const perProcess = (side: { memory?: { pssKb: number; processes: number } }): number | undefined => (side.memory === undefined ? undefined : side.memory.pssKb / side.memory.processes);
        kbEach.floor = perProcess(run.floor) ?? kbEach.floor;
        kbEach.bgworker = perProcess(run.bgworker) ?? kbEach.bgworker;
        kbEach.pm2 = (run.pm2 === undefined ? undefined : perProcess(run.pm2)) ?? kbEach.pm2;
      }
      raw.many = runs;
      manyRows(runs, sizes);
    }
  } finally {
    project.remove();
  }
  addFact("quiet", quiet);
  orderRows(GROUPS);
  console.log(`\nNode ${process.version} (${process.execPath}), ${quick ? "quick" : "full"} run\n`);
  printTable();
  for (const [name, value] of Object.entries(allFacts())) console.log(`${name}: ${JSON.stringify(value)}`);
  const loadAtEnd = loadavg();
  const result = {
    date: new Date().toISOString(),
    mode: quick ? "quick" : "full",
    groups: GROUPS.filter((group) => only.has(group)),
    /** Rows of groups that ran because another group asked for them (the light group runs scale's many-workers rows). */
    rowGroups: [...new Set(allRows().map((row) => row.group))],
    configuration: "built package (dist/) through the CLI, plain node, libraries in a temp project outside the package",
    machine: {
      platform: `${process.platform} ${process.arch}`,
      cpus: availableParallelism(),
      cpuModel: cpus()[0]?.model ?? "unknown",
      memoryMb: Math.round(totalmem() / 2 ** 20),
    },
    /** 1, 5 and 15-minute load averages at the start and the end: other work on the machine skews every figure. */
    loadAverage: { start: loadAtStart.map((l) => round(l, 2)), end: loadAtEnd.map((l) => round(l, 2)) },
    node: process.version,
    postgresql: database?.postgresVersion ?? inServer?.postgresVersion ?? null,
    seconds: Math.round((Date.now() - began) / 1000),
    sizes,
    table: allRows().map((row) => ({
      ...row,
      bgworker: roundSummary(row.bgworker),
      ...(row.peer === undefined ? {} : { peer: roundSummary(row.peer) }),
      ...(row.ratio === undefined ? {} : { ratio: round(row.ratio, 2) }),
    })),
    facts: allFacts(),
    raw: roundDeep(raw),
  };
  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(OUT, JSON.stringify(result, null, 2) + "\n");
  const when = `${result.date.slice(0, 10)} ${result.date.slice(11, 16)} UTC`;
  console.log("\nmarkdown for docs/performance.md (\"Last run\"):\n");
  console.log(
    `${when}, ${result.mode} run (${result.seconds} s): ${result.machine.cpus} CPUs (${result.machine.cpuModel}), ${result.machine.memoryMb} MB memory, ${result.machine.platform}, Node ${result.node}, PostgreSQL ${result.postgresql ?? "-"}; load average (1, 5, 15 min) [${result.loadAverage.start.join(", ")}] at the start, [${result.loadAverage.end.join(", ")}] at the end.\n`,
  );
  for (const line of factLines(allFacts() as Record<string, any>)) console.log(`${line}\n`);
  console.log(markdownTable());
  console.log(`\nwrote ${OUT} (${result.seconds} s; load average ${loadAtStart[0]!.toFixed(2)} -> ${loadAtEnd[0]!.toFixed(2)} on ${result.machine.cpus} CPUs)`);
}

function roundSummary(s: Summary): Summary {
  return { n: s.n, p50: round(s.p50), p99: round(s.p99), min: round(s.min), max: round(s.max) };
}

function roundDeep(value: unknown): unknown {
  if (typeof value === "number") return round(value);
  if (Array.isArray(value)) return value.map(roundDeep);
  if (typeof value === "object" && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, roundDeep(v)]));
  return value;
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    process.exit(1);
  },
);
