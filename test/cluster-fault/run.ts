/**
 * `npm run cluster-fault`: the cluster fault harness at full size (issue #20), or any part of it. Prints one
 * line per trial as it goes (stderr), then a table of handover times per fault with issue #20's targets, the
 * overlap verdict and the negative test (stdout); writes every figure and trial as JSON with `--out`.
 *
 *   npm run cluster-fault -- [--trials N] [--faults graceful,kill,...] [--lease-ms N --renew-ms N]
 *                            [--freeze-ms N] [--deadline-ms N] [--seed N] [--fence] [--no-negative] [--out FILE]
 *   npm run cluster-fault -- --idle     the idle cost instead (idle.ts): sessions and queries per renewal period
 *
 * Faults: graceful, kill, freeze, relay, netns (root), terminate-cluster, terminate-spi, pg-fast, pg-immediate.
 * Exit status 0 when every trial reached its outcome, no overlap was seen and the negative test fired; 1
 * otherwise (targets missed are reported, not failed: they depend on the machine); 2 for a usage error.
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { FAULT_NAMES, type FaultName } from "./faults.js";
import { ms } from "./stats.js";
import { idleTable, measureIdle } from "./idle.js";
import { runTrials, type TrialsResult } from "./trials.js";

function usage(message: string): never {
  process.stderr.write(`cluster-fault: ${message}\n`);
  process.exit(2);
}

function integer(name: string, value: string | undefined, min: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) usage(`--${name} ${JSON.stringify(value)} must be an integer of at least ${min}`);
  return n;
}

let values;
try {
  ({ values } = parseArgs({
    options: {
      trials: { type: "string" },
      faults: { type: "string" },
      "lease-ms": { type: "string" },
      "renew-ms": { type: "string" },
      "freeze-ms": { type: "string" },
      "deadline-ms": { type: "string" },
      seed: { type: "string" },
      fence: { type: "boolean" },
      "no-negative": { type: "boolean" },
      out: { type: "string" },
      idle: { type: "boolean" },
    },
  }));
} catch (error) {
  usage((error as Error).message);
}

if (values.idle === true) {
  const rows = await measureIdle((line) => process.stderr.write(`cluster-fault: idle: ${line}\n`));
  process.stdout.write(`${idleTable(rows)}\n`);
  if (values.out !== undefined) writeFileSync(values.out, JSON.stringify(rows, null, 2) + "\n");
  process.exit(0);
}

const faults = values.faults?.split(",").map((f) => f.trim()).filter((f) => f !== "");
for (const f of faults ?? []) if (!(FAULT_NAMES as readonly string[]).includes(f)) usage(`unknown fault ${JSON.stringify(f)} (known: ${FAULT_NAMES.join(", ")})`);
const leaseMs = integer("lease-ms", values["lease-ms"], 500);
const renewMs = integer("renew-ms", values["renew-ms"], 10);
const freezeMs = integer("freeze-ms", values["freeze-ms"], 0);
const deadlineMs = integer("deadline-ms", values["deadline-ms"], 1000);
const seed = integer("seed", values.seed, 0);

// Ctrl-C: finish the trial in progress, clean everything up, report what was measured. A second one exits.
const interrupt = new AbortController();
process.on("SIGINT", () => {
  if (interrupt.signal.aborted) process.exit(130);
  process.stderr.write("cluster-fault: interrupted: finishing the trial in progress and cleaning up (Ctrl-C again to leave at once)\n");
  interrupt.abort();
});

const result = await runTrials({
  signal: interrupt.signal,
  trials: integer("trials", values.trials, 1) ?? 50,
  ...(faults === undefined ? {} : { faults: faults as FaultName[] }),
  ...(leaseMs === undefined ? {} : { leaseMs }),
  ...(renewMs === undefined ? {} : { renewMs }),
  ...(freezeMs === undefined ? {} : { freezeMs }),
  ...(deadlineMs === undefined ? {} : { deadlineMs }),
  ...(seed === undefined ? {} : { seed }),
  fence: values.fence === true,
  negative: values["no-negative"] !== true,
  log: (line) => process.stderr.write(`cluster-fault: ${line}\n`),
});

process.stdout.write(render(result) + "\n");
if (values.out !== undefined) {
  writeFileSync(values.out, JSON.stringify(result, (_key, value: unknown) => (typeof value === "bigint" ? value.toString() : value), 2) + "\n");
  process.stderr.write(`cluster-fault: wrote ${values.out}\n`);
}
process.exitCode = result.failures.length === 0 ? 0 : 1;

/** The report: a table per fault, then the overlap verdict and the negative test. */
function render(r: TrialsResult): string {
  const o = r.options;
  const lines = [
    `cluster-fault: ${o.trials} trial(s) of each fault, lease ${o.leaseMs} ms, renewal ${o.renewMs} ms` +
      `${o.fence ? ", fenced transactions" : ""}, Node ${r.node}, ${r.startedAt.slice(0, 10)}, ${r.seconds.toFixed(0)} s`,
    "",
    "| fault | trials | reached | handover p50 | p99 | max | from release p50 | first row p50 | first line p50 | old worker gone p50 | its end before the acquire, least | target |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const f of r.faults) {
    if (f.skipped !== null) {
      lines.push(`| ${f.fault} | skipped: ${f.skipped} | | | | | | | | | | |`);
      continue;
    }
    const target = f.target === null ? (o.leaseMs === 5000 && o.renewMs === 1000 ? "-" : "(targets are for lease 5000/1000)") : f.target.lines.join("; ");
    lines.push(
      `| ${f.fault} | ${f.trials} | ${f.reached} | ${ms(f.handover.p50)} | ${ms(f.handover.p99)} | ${ms(f.handover.max)} | ` +
        `${ms(f.fromRelease.p50)} | ${ms(f.firstRow.p50)} | ${ms(f.firstLine.p50)} | ${ms(f.oldWorkerGone.p50)} | ` +
        `${f.processGapMin === null ? "-" : f.processGapMin < 0 ? `${f.processOverlaps} trial(s) after it, by up to ${ms(-f.processGapMin)}${f.fault === "freeze" ? " (frozen: expected)" : ""}` : ms(f.processGapMin)} | ${target} |`,
    );
  }
  const v = r.overlap;
  lines.push(
    "",
    `Overlap over ${v.rows} committed rows, ${v.lines} file lines, ${v.generations} generations: ` +
      (v.zero ? "none (no double run in the database, by sequence" + (v.commitTimestamps ? " or commit time" : "") + "; none outside it; no token shared by two nodes)" : "FOUND"),
  );
  for (const d of [...v.database, ...(v.commit ?? []), ...v.file, ...v.sharedGenerations]) lines.push(`  - ${d}`);
  if (r.negative !== null) {
    const n = r.negative;
    lines.push(
      `Negative test (bounds broken on purpose: two host-scoped copies, tokens 1 and 2): ${n.fired ? "the detector fired" : "the detector DID NOT fire"} ` +
        `(${n.database} in the database, ${n.commit ?? "-"} by commit time, ${n.file} outside, over ${n.rows} rows and ${n.lines} lines)`,
    );
  }
  if (r.warnings.length > 0) lines.push("", "Bounds broken without an overlap of actions:", ...r.warnings.map((w) => `  - ${w}`));
  if (r.failures.length > 0) lines.push("", "Failures:", ...r.failures.map((f) => `  - ${f}`));
  return lines.join("\n");
}
