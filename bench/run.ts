/**
 * The benchmark (`npm run bench`, `npm run bench -- --quick`; never part of `npm test`; asserts nothing about
 * time). It measures what users run: the built package (`dist/`), a postmaster started with the CLI
 * (`node dist/cli/main.js start`) in a plain `node` process, driven from here over its control socket with
 * `import "bgworker"` of the built package, and worker libraries in a user's project in a temp dir, outside
 * this package. Every figure is set against a peer measured in the same run on the same machine:
 *
 *   launch    dynamic launch to Started (.ts/.js, first/repeat) vs cold fork, PM2's start (measures/launch.ts)
 *   burst     50 launches at once, the pool refilling (measures/burst.ts)
 *   restart   restart time 0, exit to replacement running, vs PM2 restart_delay 0 (measures/restart.ts)
 *   latch     latch wake-up vs process.send and a raw futex (measures/latch.ts)
 *   database  PostgreSQL's parallel worker; SPI first query; SPI overhead vs pg, postgres.js (measures/database.ts)
 *   scale     many static workers: start, RSS, idle CPU, status; launch/terminate cycles (measures/scale.ts)
 *
 * Prints a table of medians, p99 and ratios and writes bench/results/latest.json (or --out FILE).
 * `--only a,b` runs some groups (the file then holds only those).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { FULL, QUICK, type Context, type Sizes } from "./lib/context.js";
import { writeLibraries } from "./lib/libraries.js";
import { CliPostmaster } from "./lib/postmaster.js";
import { builtPackage, Project, REPO } from "./lib/project.js";
import { addFact, addRow, allFacts, allRows, printTable, progress } from "./lib/report.js";
import { median, round, summarize, type Summary } from "./lib/stats.js";
import { measureBurst } from "./measures/burst.js";
import { measureDatabase, type DatabaseResults } from "./measures/database.js";
import { measureLatch } from "./measures/latch.js";
import { measureLaunch, type LaunchResults } from "./measures/launch.js";
import { measureRestart } from "./measures/restart.js";
import { measureScale } from "./measures/scale.js";

const GROUPS = ["launch", "burst", "restart", "latch", "database", "scale"] as const;

const { values } = parseArgs({ options: { quick: { type: "boolean" }, only: { type: "string" }, out: { type: "string" } } });
const quick = values.quick === true;
const only = new Set(values.only === undefined ? GROUPS : values.only.split(","));
const OUT = values.out ?? join(REPO, "bench", "results", "latest.json");

const ratio = (peer: Summary, ours: Summary): number => peer.p50 / ours.p50;

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
}

function databaseRows(database: DatabaseResults, sizes: Sizes): void {
  const pg = summarize(database.parallelWorkerMs);
  const preopened = summarize(database.spiFirstPreopenedMs);
  const fresh = summarize(database.spiFirstFreshMs);
  addRow({ group: "database", measure: "SPI worker: launch -> first query answered", unit: "ms", bgworker: preopened, peer: pg, peerLabel: "PostgreSQL parallel worker to first tuple", ratio: ratio(pg, preopened), target: "no slower (ratio >= 1.0)", met: ratio(pg, preopened) >= 1 });
  addRow({ group: "database", measure: "SPI worker, new connection (another database)", unit: "ms", bgworker: fresh, peer: pg, peerLabel: "PostgreSQL parallel worker to first tuple", ratio: ratio(pg, fresh), note: `the pre-opened session saves ${(fresh.p50 - preopened.p50).toFixed(2)} ms at the median` });
  const { spi, pg: raw, postgres } = database.overhead;
  for (const [what, label, count] of [["selectsMs", "single-row selects", sizes.selects], ["transactionsMs", "small transactions", sizes.selects / 10]] as const) {
    const ours = summarize(spi[what]);
    const peer = summarize(raw[what]);
    const js = summarize(postgres[what]);
    addRow({ group: "database", measure: `SPI, ${count} ${label}`, unit: "ms", bgworker: ours, peer, peerLabel: "raw pg, same statements", ratio: ratio(peer, ours), target: "overhead <= 5%", met: ours.p50 <= peer.p50 * 1.05 });
    addRow({ group: "database", measure: `SPI, ${count} ${label}`, unit: "ms", bgworker: ours, peer: js, peerLabel: "postgres.js, same statements", ratio: ratio(js, ours) });
  }
  addFact("postgresParallelQuery", { serialMs: summarize(database.serialQueryMs), parallelMs: summarize(database.parallelQueryMs) });
}

async function main(): Promise<void> {
  const began = Date.now();
  const loadAtStart = loadavg();
  const sizes = quick ? QUICK : FULL;
  const project = new Project();
  const ctx: Context = { project, libraries: writeLibraries(project), bgw: await builtPackage(), sizes, quick };
  const raw: Record<string, unknown> = {};
  let launch: LaunchResults | undefined;
  let database: DatabaseResults | undefined;
  progress(`${quick ? "quick" : "full"} run; user project in ${project.dir}`);
  try {
    if (only.has("launch") || only.has("burst") || only.has("restart") || only.has("latch")) {
      const pm = await CliPostmaster.start(project, [ctx.libraries.extension], ["--no-database", "--max-worker-processes", String(sizes.burst + 14)]);
      try {
        if (only.has("launch")) {
          progress("launch");
          launch = await measureLaunch(ctx, pm);
          raw.launch = launch;
        }
        if (only.has("burst")) {
          progress("burst");
          const burst = await measureBurst(ctx, pm);
          raw.burst = burst;
          addRow({ group: "burst", measure: `burst of ${burst.started} launches at once -> each Started`, unit: "ms", bgworker: summarize(burst.launchMs), note: `${burst.started}/${sizes.burst} Started, all within ${burst.allStartedMs.toFixed(0)} ms; spares ${burst.sparesBefore} before, ${burst.sparesAfter} after (refilled ${(burst.refilledMs / 1000).toFixed(1)} s after the last exit)` });
        }
        if (only.has("restart")) {
          progress("restart");
          const restart = await measureRestart(ctx, pm);
          raw.restart = restart;
          const ours = summarize(restart.bgworker);
          const peer = summarize(restart.pm2);
          addRow({ group: "restart", measure: "restart time 0: exit -> replacement running", unit: "ms", bgworker: ours, peer, peerLabel: "PM2, restart_delay 0", ratio: ratio(peer, ours), target: "p50 <= 10 ms", met: ours.p50 <= 10 });
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
    if (only.has("database")) {
      progress("database");
      database = await measureDatabase(ctx);
      raw.database = database;
      databaseRows(database, sizes);
    }
    if (launch !== undefined) launchRows(launch, database);
    if (only.has("scale")) {
      progress("scale");
      const scale = await measureScale(ctx);
      raw.scale = scale;
      addRow({ group: "scale", measure: `${scale.workers} static workers: start -> all running`, unit: "ms", bgworker: summarize([scale.allRunningMs]) });
      addRow({ group: "scale", measure: `status over the socket, ${scale.workers} workers`, unit: "ms", bgworker: summarize(scale.statusMs), target: "< 50 ms", met: median(scale.statusMs) < 50, note: `the CLI's \`bgworker status\` (a Node start included): ${median(scale.cliStatusMs).toFixed(0)} ms` });
      addRow({ group: "scale", measure: `idle CPU of the whole tree over ${scale.idleSeconds.toFixed(0)} s`, unit: "%", bgworker: summarize([scale.idleCpuPercent]), target: "< 1% of one CPU", met: scale.idleCpuPercent < 1 });
      addRow({ group: "scale", measure: `${scale.cycles} sequential launch/terminate cycles: launch -> Started`, unit: "ms", bgworker: summarize(scale.cycleLaunchMs), note: `postmaster RSS ${(scale.rssKb.start / 1024).toFixed(1)} -> ${(scale.rssKb.end / 1024).toFixed(1)} MB, open fds ${scale.fds.start} -> ${scale.fds.end}, ${scale.cyclesSeconds.toFixed(0)} s` });
      addFact("memory", {
        postmasterRssMb: round(scale.postmasterRssKb / 1024, 1),
        idleWorkerRssMb: round(scale.workerRssKb / 1024, 1),
        idleWorkerPssMb: round(scale.workerPssKb / 1024, 1),
        bareNodeRssMb: round(scale.bareNodeRssKb / 1024, 1),
        bareNodePssMb: round(scale.bareNodePssKb / 1024, 1),
      });
    }
  } finally {
    project.remove();
  }
  printTable();
  for (const [name, value] of Object.entries(allFacts())) console.log(`${name}: ${JSON.stringify(value)}`);
  const loadAtEnd = loadavg();
  const result = {
    date: new Date().toISOString(),
    mode: quick ? "quick" : "full",
    groups: [...only],
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
    postgresql: database?.postgresVersion ?? null,
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
  console.log(`wrote ${OUT} (${result.seconds} s; load average ${loadAtStart[0]!.toFixed(2)} -> ${loadAtEnd[0]!.toFixed(2)} on ${result.machine.cpus} CPUs)`);
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
