/**
 * Sets results files side by side (`node --import tsx bench/compare.ts A.json B.json ...`): one markdown
 * table, a row per measure and peer, a column per file (headed by the Node version that ran it), each cell the
 * bgworker median against the peer's and whether the target was met. Prints only what the files hold; the
 * light facts' parts (where a worker's milliseconds and megabytes go) follow as a second table.
 */
import { readFileSync } from "node:fs";

interface Cell {
  readonly n: number;
  readonly p50: number;
  readonly p99: number;
}
interface Row {
  readonly group: string;
  readonly measure: string;
  readonly unit: string;
  readonly bgworker: Cell;
  readonly peer?: Cell;
  readonly peerLabel?: string;
  readonly ratio?: number;
  readonly target?: string;
  readonly met?: boolean;
}
interface Result {
  readonly node: string;
  readonly mode: string;
  readonly date: string;
  readonly table: readonly Row[];
  readonly facts: Record<string, any>;
}

const files = process.argv.slice(2);
if (files.length === 0) throw new Error("usage: compare.ts RESULTS.json...");
const results = files.map((file) => JSON.parse(readFileSync(file, "utf8")) as Result);

function figure(value: number | undefined, unit: string): string {
  if (value === undefined || value === null || !Number.isFinite(value)) return "-";
  if (unit === "ms" && value >= 10_000) return `${(value / 1000).toFixed(2)} s`;
  const shown = unit === "us" ? "µs" : unit;
  return `${value < 10 ? value.toFixed(2) : value.toFixed(1)} ${shown}`;
}

const keys: string[] = [];
const byKey = new Map<string, (Row | undefined)[]>();
results.forEach((result, i) => {
  for (const row of result.table) {
    const key = `${row.group}\u0000${row.measure}\u0000${(row.peerLabel ?? "").replace(/: skipped.*$/, "")}`;
    if (!byKey.has(key)) {
      byKey.set(key, new Array(results.length).fill(undefined));
      keys.push(key);
    }
    byKey.get(key)![i] = row;
  }
});

const head = results.map((result) => `Node ${result.node.replace(/^v/, "")} (${result.date.slice(0, 16).replace("T", " ")}, ${result.mode})`);
console.log(`| measure | peer | ${head.join(" | ")} | target |`);
console.log(`| --- | --- | ${head.map(() => "---").join(" | ")} | --- |`);
for (const key of keys) {
  const rows = byKey.get(key)!;
  const any = rows.find((row) => row !== undefined)!;
  const cells = rows.map((row) => {
    if (row === undefined) return "";
    const ours = figure(row.bgworker.p50, row.unit);
    const peer = row.peer === undefined ? "" : ` against ${figure(row.peer.p50, row.unit)}`;
    const ratio = row.ratio === undefined || row.ratio === null ? "" : ` (${Number(row.ratio.toFixed(2))}x)`;
    const met = row.target === undefined ? "" : row.met === true ? ", met" : ", **missed**";
    return `${ours}${peer}${ratio}${met}`;
  });
  console.log(`| ${any.measure} | ${any.peerLabel ?? ""} | ${cells.join(" | ")} | ${any.target ?? ""} |`);
}

const lights = results.map((result) => result.facts.light as Record<string, any> | undefined);
if (lights.some((light) => light !== undefined)) {
  const PARTS: [string, string][] = [
    ["esmEntry", "an ES module entry file (over `node -e`)"],
    ["importBgworker", '`import "bgworker"`'],
    ["tsLibrary", "the `.ts` library, as compiled files from the cache"],
    ["runnerItself", "the runner itself (a warm spare against the shape with all of the above)"],
    ["becomingTheWorker", "becoming the worker (an idle worker against a warm spare)"],
    ["typeScriptHooks", "the package's TypeScript module hooks (over an ES module entry; only for a library that needs them)"],
    ["pg", "`pg` (over an ES module entry; loaded by SPI only)"],
    ["tsx", "tsx's loader registered (over an ES module entry)"],
    ["workerThread", "one worker thread (over an ES module entry)"],
  ];
  console.log(`\n| part | ${head.join(" | ")} |`);
  console.log(`| --- | ${head.map(() => "---").join(" | ")} |`);
  const cell = (light: Record<string, any> | undefined, name: string): string => {
    const part = light?.parts?.[name];
    if (part === undefined) return "";
    const cpu = part.cpuMs === undefined ? "" : `, ${part.cpuMs >= 0 ? "+" : ""}${part.cpuMs} ms CPU`;
    return `${part.pssMb >= 0 ? "+" : ""}${part.pssMb} MB PSS (USS ${part.ussMb >= 0 ? "+" : ""}${part.ussMb})${cpu}`;
  };
  console.log(`| bare \`node -e\` with an IPC channel | ${lights.map((l) => (l === undefined ? "" : `${l.shapes.bare.pssMb} MB PSS (USS ${l.shapes.bare.ussMb}), ${l.shapes.bare.cpuMs.p50.toFixed(1)} ms CPU to ready`)).join(" | ")} |`);
  for (const [name, label] of PARTS) console.log(`| ${label} | ${lights.map((l) => cell(l, name)).join(" | ")} |`);
  console.log(`| an idle \`.ts\` worker, all told | ${lights.map((l) => (l === undefined ? "" : `${l.worker.pssMb} MB PSS (USS ${l.worker.ussMb})`)).join(" | ")} |`);
  console.log(`| threads: bare, \`.ts\` library shape, warm spare, idle worker | ${lights.map((l) => (l?.threads === undefined ? "" : `${l.threads.shapes.bare}, ${l.threads.shapes.library}, ${l.threads.spare}, ${l.threads.worker}`)).join(" | ")} |`);
  console.log(`| a spare's boot to warm | ${lights.map((l) => (l === undefined ? "" : `${l.spareBootCpuMs.p50} ms CPU, ${Math.round(l.spareBootWallMs.p50)} ms wall`)).join(" | ")} |`);
  console.log(`| \`node -e 0\` | ${lights.map((l) => (l === undefined ? "" : `${l.nodeE0CpuMs.p50} ms CPU`)).join(" | ")} |`);
}
