/**
 * The cluster fault harness (issue #20): three postmasters on one PostgreSQL, one cluster-scoped singleton,
 * and each fault of faults.ts injected `trials` times into the steady state. For every trial it measures the
 * handover by the postmasters' own timestamps, and at the end it hands every committed row and every line
 * of the shared file to the overlap detector (overlap.ts). `runTrials` is the whole of it: `run.ts` (`npm
 * run cluster-fault`) calls it at full size, test/integration/cluster-fault.test.ts in a bounded form.
 *
 * Handover of a trial:
 * - `handover`: from the fault to the new holder's `lease-acquired` (its log's time; both are this host's
 *   wall clock). For the graceful stop, from the old postmaster's `shutdown-requested` (its receipt of the
 *   stop; the CLI's own start-up is not the product's handover); the time from the CLI's launch is kept too.
 *   For `terminate-spi` (no new lease): from the fault to the first line of the singleton's new process.
 * - `fromRelease`: from the old holder's `lease-released` to the new `lease-acquired`, when it released.
 * - `firstRow`: from the fault to the first row of the new generation (the server's clock_timestamp()), or of
 *   the singleton's new process when it comes back under the same generation.
 * - `firstLine`: from the fault to the first line of the new generation (the host's monotonic clock).
 *
 * Negative test (`negative: true`): two postmasters without --cluster each run the singleton host-scoped,
 * with tokens 1 and 2: the bounds broken on purpose, two holders at once. The detector must fire, in the
 * database and outside it; else the zero it reports for the real trials proves nothing.
 */
import { faultsByName, FAULT_NAMES, type Fault, type FaultName, type Injected } from "./faults.js";
import { ClusterNode } from "./nodes.js";
import { netnsUnavailable } from "./netns.js";
import { anyOverlap, describeOverlap, overlapReport, type Overlap, type OverlapReport } from "./overlap.js";
import { SharedFile } from "./shared-file.js";
import { judge, summarize, TARGETS, type Summary } from "./stats.js";
import { sleep, World, type Steady } from "./world.js";
import { join } from "node:path";
import { WORKER_NAME } from "./fixtures/names.js";

export interface TrialOptions {
  /** Trials of each fault. */
  readonly trials: number;
  readonly faults?: readonly FaultName[];
  /** Lease and renewal period of every node (the product's defaults: 5000, 1000). */
  readonly leaseMs?: number;
  readonly renewMs?: number;
  /** The freeze's length (issue #20: 10 s). */
  readonly freezeMs?: number;
  /** How long a trial may wait for its outcome; default 3 leases + 20 s. */
  readonly deadlineMs?: number;
  /** Run the negative test too (default true). */
  readonly negative?: boolean;
  /** The singleton calls bgworker.fence() in each transaction (default false: the takeover's terminations alone). */
  readonly fence?: boolean;
  /** Seed of the random delay before each fault (a random phase against the renewals). */
  readonly seed?: number;
  readonly log?: (line: string) => void;
  /** Stops the run after the trial in progress (then everything is cleaned up and the figures so far returned). */
  readonly signal?: AbortSignal;
}

export interface TrialRecord {
  readonly fault: FaultName;
  readonly index: number;
  /** The outcome came within the deadline. */
  reached: boolean;
  oldHolder: string;
  oldGeneration: string;
  newHolder: string | null;
  newGeneration: string | null;
  /** For a singleton that comes back under the same lease: its new process. */
  newPid: number | null;
  /** ms; null when not measured. */
  handover: number | null;
  fromInjection: number | null;
  fromRelease: number | null;
  firstRow: number | null;
  firstLine: number | null;
  /** ms after the fault when the old singleton process was seen gone (polled every 5 ms); null: not within the watch. */
  oldWorkerGone: number | null;
  /**
   * ms from the old process's end to the new lease's acquire: negative when both processes existed at once
   * (expected for a freeze, where the old one is stopped; the database fences it either way).
   */
  processGap: number | null;
  /** ms after the fault when the old holder logged `leadership-lost` for its generation. */
  leadershipLost: number | null;
  /** Overlaps the detector attributed to this trial. */
  overlaps: string[];
  /** The old holder's log from the fault on ("time [pid] level message"), up to 40 lines: the evidence for a report. */
  oldHolderLog: string[];
  notes: string[];
  error: string | null;
  /** For the figures measured after the trial: when the fault was injected, and the new lease acquired (wall ms). */
  injectedAt: number;
  acquiredAt: number | null;
  injectedMono: string;
}

export interface FaultFigures {
  readonly fault: FaultName;
  readonly title: string;
  readonly expect: string;
  readonly skipped: string | null;
  readonly trials: number;
  readonly reached: number;
  readonly handover: Summary;
  readonly fromRelease: Summary;
  readonly firstRow: Summary;
  readonly firstLine: Summary;
  readonly oldWorkerGone: Summary;
  /** The smallest process gap (ms), and how many trials had a negative one. */
  readonly processGapMin: number | null;
  readonly processOverlaps: number;
  readonly overlaps: { readonly database: number; readonly commit: number; readonly file: number };
  /** Issue #20's target for this fault, judged only with the default lease and renewal. */
  readonly target: { readonly met: boolean; readonly lines: readonly string[] } | null;
}

export interface NegativeResult {
  readonly rows: number;
  readonly lines: number;
  readonly database: number;
  readonly commit: number | null;
  readonly file: number;
  /** The detector fired in the database and outside it. */
  readonly fired: boolean;
  readonly examples: readonly string[];
}

export interface TrialsResult {
  readonly options: Required<Omit<TrialOptions, "log" | "faults" | "signal">> & { readonly faults: readonly FaultName[] };
  readonly node: string;
  readonly startedAt: string;
  readonly seconds: number;
  readonly faults: readonly FaultFigures[];
  readonly trials: readonly TrialRecord[];
  readonly overlap: {
    readonly rows: number;
    readonly lines: number;
    readonly badLines: number;
    readonly generations: number;
    readonly commitTimestamps: boolean;
    readonly database: readonly string[];
    readonly commit: readonly string[] | null;
    readonly file: readonly string[];
    readonly sharedGenerations: readonly string[];
    /** No overlap of any kind (database, commit, file, shared token). */
    readonly zero: boolean;
  };
  readonly negative: NegativeResult | null;
  /** Every trial reached its outcome within the deadline (skipped faults aside). */
  readonly everyTrialReached: boolean;
  /** Failures of the harness or the product: trials that did not reach, setup errors, a silent negative test. */
  readonly failures: readonly string[];
  /**
   * What breaks a documented bound without an overlap of actions: an old singleton process that outlived the
   * new holder's acquire where the holder should have killed it first (every fault but the freeze).
   */
  readonly warnings: readonly string[];
}

/** Mulberry32, so that a run's delays are reproduced by its seed. */
function rng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const DEFAULT_LEASE_MS = 5000;
const DEFAULT_RENEW_MS = 1000;

/** Runs the trials (and the negative test) and returns every figure; cleans everything up, also on failure. */
export async function runTrials(options: TrialOptions): Promise<TrialsResult> {
  const began = performance.now();
  const log = options.log ?? (() => undefined);
  const leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
  const renewMs = options.renewMs ?? DEFAULT_RENEW_MS;
  const freezeMs = options.freezeMs ?? 10_000;
  const deadlineMs = options.deadlineMs ?? 3 * leaseMs + 20_000;
  const seed = options.seed ?? 20;
  const fence = options.fence ?? false;
  const negative = options.negative ?? true;
  const catalogue = faultsByName(freezeMs);
  const requested = options.faults ?? FAULT_NAMES;
  for (const name of requested) if (!catalogue.has(name)) throw new RangeError(`unknown fault ${JSON.stringify(name)} (known: ${FAULT_NAMES.join(", ")})`);
  // The relay's faults first, then the namespace's: one change of route at most.
  const ordered = [...requested].sort((a, b) => Number(catalogue.get(a)!.route === "netns") - Number(catalogue.get(b)!.route === "netns"));
  const netnsReason = ordered.some((name) => catalogue.get(name)!.route === "netns") ? netnsUnavailable() : null;

  const failures: string[] = [];
  const records: TrialRecord[] = [];
  const skipped = new Map<FaultName, string>();
  const random = rng(seed);
  const aborted = (): boolean => options.signal?.aborted === true;
  let world: World | undefined;
  let report: OverlapReport | undefined;
  let negativeResult: NegativeResult | null = null;
  try {
    world = await World.create({ leaseMs, renewMs, netns: ordered.some((n) => n === "netns") && netnsReason === null, fence, log });
    log(`PostgreSQL on port ${world.pg.params.port}; lease ${leaseMs} ms, renewal ${renewMs} ms; commit timestamps ${world.commitTimestamps ? "tracked" : "not tracked"}`);
    for (const name of ordered) {
      const fault = catalogue.get(name)!;
      const unavailable = fault.route === "netns" ? (netnsReason ?? world.netnsError) : null;
      if (unavailable !== null) {
        skipped.set(name, unavailable);
        log(`${name}: skipped: ${unavailable}`);
        continue;
      }
      if (aborted()) break;
      await world.useRoute(fault.route);
      for (let index = 1; index <= options.trials && !aborted(); index++) {
        const record = await runTrial(world, fault, index, { deadlineMs, renewMs, random, log });
        records.push(record);
        log(`${name} #${index}: ${summaryLine(record)}`);
        if (!record.reached) failures.push(`${name} #${index}: ${record.error ?? "no outcome"}`);
      }
    }
  } catch (error) {
    failures.push(`aborted: ${error instanceof Error ? error.message : String(error)}`);
  }
  // Whatever happened above: every row and line written so far goes to the detector, then all is removed.
  if (world !== undefined) {
    try {
      await world.stopNodes();
      for (const record of records) record.oldHolderLog = evidence(record);
      world.file.poll();
      report = overlapReport(await world.rows("fault_runs"), world.file.lines);
      attribute(report, records);
      if (negative && !aborted()) {
        negativeResult = await runNegative(world, log);
        if (!negativeResult.fired) failures.push(`the negative test did not make the detector fire (database ${negativeResult.database}, file ${negativeResult.file})`);
      }
    } catch (error) {
      failures.push(`the overlap check failed: ${error instanceof Error ? error.message : String(error)}`);
    } finally {
      await world.close();
    }
  }

  if (aborted()) failures.push("interrupted: the figures are those of the trials run so far");
  const warnings = records
    .filter((r) => r.fault !== "freeze" && r.processGap !== null && r.processGap < 0)
    .map(
      (r) =>
        `${r.fault} #${r.index}: the old singleton of ${r.oldHolder} (generation ${r.oldGeneration}) was still running ${Math.round(-r.processGap!)} ms ` +
        `after ${r.newHolder} acquired generation ${r.newGeneration} (gone ${Math.round(r.oldWorkerGone!)} ms after the fault, leadership lost at ` +
        `${r.leadershipLost === null ? "-" : Math.round(r.leadershipLost)} ms)`,
    );
  const zero = report !== undefined && !anyOverlap(report);
  if (report !== undefined && !zero) failures.push("overlap detected: see overlap");
  if (report !== undefined && world !== undefined && world.file.bad.length > 0) failures.push(`${world.file.bad.length} torn or foreign lines in the shared file`);
  const defaults = leaseMs === DEFAULT_LEASE_MS && renewMs === DEFAULT_RENEW_MS;
  const figures = ordered.map((name) => figuresOf(catalogue.get(name)!, records.filter((r) => r.fault === name), skipped.get(name) ?? null, defaults));
  return {
    options: { trials: options.trials, faults: ordered, leaseMs, renewMs, freezeMs, deadlineMs, negative, fence, seed },
    node: process.version,
    startedAt: new Date(Date.now() - (performance.now() - began)).toISOString(),
    seconds: (performance.now() - began) / 1000,
    faults: figures,
    trials: records,
    overlap: {
      rows: report?.rows ?? 0,
      lines: report?.lines ?? 0,
      badLines: world?.file.bad.length ?? 0,
      generations: report?.generations ?? 0,
      commitTimestamps: world?.commitTimestamps ?? false,
      database: report?.database.map(describeOverlap) ?? [],
      commit: report?.commit?.map(describeOverlap) ?? null,
      file: report?.file.map(describeOverlap) ?? [],
      sharedGenerations: report?.shared.map((s) => `generation ${s.generation}: nodes ${s.nodes.join(", ")}`) ?? [],
      zero,
    },
    negative: negativeResult,
    everyTrialReached: records.every((r) => r.reached),
    failures,
    warnings,
  };
}

interface TrialContext {
  readonly deadlineMs: number;
  readonly renewMs: number;
  readonly random: () => number;
  readonly log: (line: string) => void;
}

/** The old holder of each trial, whose log is read at the end of the run (complete by then). */
const holders = new WeakMap<TrialRecord, ClusterNode>();

/** The old holder's log from just before the fault to 20 s after it, up to 40 lines, with each line's pid. */
function evidence(record: TrialRecord): string[] {
  const node = holders.get(record);
  if (node === undefined || record.injectedAt === 0) return [];
  return node.records
    .filter((r) => {
      const at = Date.parse(r.time);
      return at >= record.injectedAt - 100 && at <= record.injectedAt + 20_000;
    })
    .slice(0, 40)
    .map((r) => `${r.time} [${r.pid}] ${r.level} ${r.message}`);
}

/** One trial: steady state, a random pause, the fault, its outcome, its undoing. Never throws. */
async function runTrial(world: World, fault: Fault, index: number, context: TrialContext): Promise<TrialRecord> {
  const record: TrialRecord = {
    fault: fault.name,
    index,
    reached: false,
    oldHolder: "",
    oldGeneration: "",
    newHolder: null,
    newGeneration: null,
    newPid: null,
    handover: null,
    fromInjection: null,
    fromRelease: null,
    firstRow: null,
    firstLine: null,
    oldWorkerGone: null,
    processGap: null,
    leadershipLost: null,
    overlaps: [],
    oldHolderLog: [],
    notes: [],
    error: null,
    injectedAt: 0,
    acquiredAt: null,
    injectedMono: "0",
  };
  let injected: Injected | undefined;
  let steady: Steady | undefined;
  let watch: { gone: Promise<number>; stop(): void } | undefined;
  try {
    steady = await world.healthy(context.deadlineMs);
    // A random phase against the renewals, then the fault on the holder still in place.
    await sleep(Math.floor(context.random() * context.renewMs));
    steady = await world.healthy(context.deadlineMs);
    if (fault.minUptimeMs !== undefined) steady = await untilUptime(world, steady, fault.minUptimeMs, context.deadlineMs);
    record.oldHolder = steady.holder.nodeId;
    record.oldGeneration = steady.generation.toString();
    world.file.poll();
    const linesBefore = world.file.lines.length;
    // Watched from before the injection: a fault's own call may take a while (pg_ctl restart waits for the server).
    watch = watchGone(steady.holder, steady.workerPid);
    injected = await fault.inject(world, steady);
    record.injectedAt = injected.at;
    record.injectedMono = injected.mono.toString();
    record.notes.push(...injected.notes);
    await outcome(world, fault, steady, injected, linesBefore, record, context.deadlineMs);
  } catch (error) {
    record.error = error instanceof Error ? error.message : String(error);
  }
  // Undo the fault, whatever happened; replace a stopped or killed postmaster.
  try {
    if (injected !== undefined) {
      await injected.restore();
      if (injected.replaceHolder && steady !== undefined) await world.replaceNode(steady.holder.label);
    }
  } catch (error) {
    record.notes.push(`restoring failed: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (!record.reached || record.notes.some((n) => n.startsWith("restoring failed"))) {
    context.log(`${fault.name} #${index}: ${record.error ?? "restoring failed"}; resetting the nodes`);
    await world.reset().catch((error: Error) => record.notes.push(`reset failed: ${error.message}`));
  }
  // When the old singleton's process was gone, against the fault and the new acquire.
  if (watch !== undefined) {
    const goneAt = await Promise.race([watch.gone, sleep(10_000).then(() => null)]);
    watch.stop();
    if (goneAt !== null) {
      record.oldWorkerGone = goneAt - record.injectedAt;
      if (record.acquiredAt !== null) record.processGap = record.acquiredAt - goneAt;
    }
  }
  if (steady !== undefined && record.injectedAt > 0) {
    const lost = steady.holder.leaseEvents("leadership-lost").find((e) => e.generation === steady!.generation);
    if (lost !== undefined) {
      record.leadershipLost = lost.at - record.injectedAt;
      record.notes.push(`leadership lost: ${lost.reason ?? "?"}`);
    }
  }
  if (steady !== undefined) holders.set(record, steady.holder);
  // The old holder's release, logged after its query returned: maybe after the new holder's acquire, so
  // read once the fault is undone (a stopped postmaster's log is complete then).
  if (steady !== undefined && record.acquiredAt !== null) {
    const released = steady.holder.leaseEvents("lease-released").find((e) => e.generation === steady!.generation);
    if (released !== undefined) record.fromRelease = record.acquiredAt - released.at;
  }
  // Measures that need the rows: the first row of the new generation.
  if (record.newGeneration !== null && record.injectedAt > 0) {
    const of = record.newPid !== null ? { pid: record.newPid, after: record.injectedAt } : { generation: BigInt(record.newGeneration) };
    const first = await world.firstRowAt(of).catch(() => undefined);
    if (first !== undefined) record.firstRow = first - record.injectedAt;
  }
  return record;
}

/**
 * Waits until the singleton's process has written lines for `minMs` (its first line in the shared file, by
 * the host's monotonic clock), and returns the steady state then.
 */
async function untilUptime(world: World, steady: Steady, minMs: number, deadlineMs: number): Promise<Steady> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    world.file.poll();
    const first = world.file.lines.find((l) => l.pid === steady.workerPid);
    const upMs = first === undefined ? 0 : Number(process.hrtime.bigint() - first.monoNs) / 1e6;
    if (upMs >= minMs) return steady;
    if (Date.now() > deadline) throw new Error(`the singleton (pid ${steady.workerPid}) did not stay up ${minMs} ms within ${deadlineMs} ms`);
    await sleep(first === undefined ? 20 : Math.min(minMs - upMs + 5, 250));
    steady = await world.healthy(deadlineMs);
  }
}

/** Waits for what must follow the fault, and measures it into `record`. */
async function outcome(world: World, fault: Fault, steady: Steady, injected: Injected, linesBefore: number, record: TrialRecord, deadlineMs: number): Promise<void> {
  const deadline = injected.at + deadlineMs;
  const old = steady.generation;
  if (fault.expect === "resume") {
    // The singleton's next process: its first line after the fault.
    const first = await poll(() => {
      world.file.poll();
      return world.file.since(linesBefore).find((l) => l.pid !== steady.workerPid && l.monoNs > injected.mono && l.generation >= old);
    }, deadline);
    if (first === undefined) throw new Error(`the singleton did not come back within ${deadlineMs} ms`);
    record.reached = true;
    record.firstLine = Number(first.monoNs - injected.mono) / 1e6;
    record.handover = record.firstLine;
    record.newGeneration = first.generation.toString();
    record.newHolder = first.node;
    record.newPid = first.pid;
    if (first.generation !== old) record.notes.push(`came back under a new generation ${first.generation} on ${first.node}`);
    return;
  }
  // A new generation, acquired by any running node (or, for other-node faults, by another).
  const acquired = await poll(() => {
    for (const node of world.allNodes) {
      const event = node.acquiredAfter(old);
      if (event !== undefined) return { node, event };
    }
    return undefined;
  }, deadline);
  if (acquired === undefined) {
    const lease = await world.lease().catch(() => null);
    throw new Error(`no node acquired a generation after ${old} within ${deadlineMs} ms (lease: ${lease === null ? "?" : `${lease.holder ?? "free"} at ${lease.generation}, ttl ${Math.round(lease.ttlMs)} ms`})`);
  }
  record.reached = true;
  record.newHolder = acquired.node.nodeId;
  record.newGeneration = acquired.event.generation.toString();
  if (fault.expect === "other-node" && acquired.node.label === steady.holder.label) {
    record.reached = false;
    throw new Error(`generation ${acquired.event.generation} went to ${acquired.node.nodeId}, the place of the old holder ${steady.holder.nodeId}`);
  }
  if (acquired.event.generation !== old + 1n) record.notes.push(`generation went from ${old} to ${acquired.event.generation}`);
  record.fromInjection = acquired.event.at - injected.at;
  const requested = fault.name === "graceful" ? steady.holder.shutdownRequestedAt() : undefined;
  record.handover = acquired.event.at - (requested ?? injected.at);
  record.acquiredAt = acquired.event.at;
  // The first line of the new generation (it may come a little after the acquire).
  const line = await poll(() => {
    world.file.poll();
    return world.file.since(linesBefore).find((l) => l.generation === acquired.event.generation);
  }, Date.now() + 10_000);
  if (line !== undefined) record.firstLine = Number(line.monoNs - injected.mono) / 1e6;
  else record.notes.push(`no line of generation ${acquired.event.generation} within 10 s of its acquire`);
}

/** Polls every 5 ms until `pid` is no longer `node`'s process; `gone` resolves with that time (wall ms). */
function watchGone(node: ClusterNode, pid: number): { gone: Promise<number>; stop(): void } {
  let stopped = false;
  const gone = (async () => {
    while (!stopped) {
      if (!node.owns(pid)) return Date.now();
      await sleep(5);
    }
    return Promise.race([]) as Promise<number>; // never: the caller stopped watching
  })();
  return { gone, stop: () => void (stopped = true) };
}

async function poll<T>(probe: () => T | undefined, deadline: number): Promise<T | undefined> {
  for (;;) {
    const value = probe();
    if (value !== undefined || Date.now() > deadline) return value;
    await sleep(5);
  }
}

/** Gives each overlap to the trial during which its later generation began. */
function attribute(report: OverlapReport, records: TrialRecord[]): void {
  const all: Overlap[] = [...report.database, ...(report.commit ?? []), ...report.file];
  for (const o of all) {
    const trial = records.find(
      (r) => r.oldGeneration !== "" && r.newGeneration !== null && BigInt(r.oldGeneration) < o.laterGeneration && o.laterGeneration <= BigInt(r.newGeneration),
    );
    if (trial !== undefined) trial.overlaps.push(`${o.kind}: ${describeOverlap(o)}`);
  }
}

function figuresOf(fault: Fault, records: TrialRecord[], skipped: string | null, defaults: boolean): FaultFigures {
  const values = (pick: (r: TrialRecord) => number | null): number[] => records.map(pick).filter((v): v is number => v !== null);
  const handover = summarize(values((r) => r.handover));
  const gaps = values((r) => r.processGap);
  const count = (kind: string): number => records.reduce((n, r) => n + r.overlaps.filter((o) => o.startsWith(`${kind}:`)).length, 0);
  const targetKey = fault.name === "freeze" || fault.name === "relay" || fault.name === "netns" ? fault.name : fault.name === "graceful" || fault.name === "kill" ? fault.name : undefined;
  const target = defaults && targetKey !== undefined ? judge(handover, TARGETS[targetKey]) : null;
  return {
    fault: fault.name,
    title: fault.title,
    expect: fault.expect,
    skipped,
    trials: records.length,
    reached: records.filter((r) => r.reached).length,
    handover,
    fromRelease: summarize(values((r) => r.fromRelease)),
    firstRow: summarize(values((r) => r.firstRow)),
    firstLine: summarize(values((r) => r.firstLine)),
    oldWorkerGone: summarize(values((r) => r.oldWorkerGone)),
    processGapMin: gaps.length === 0 ? null : Math.min(...gaps),
    processOverlaps: gaps.filter((g) => g < 0).length,
    overlaps: { database: count("database"), commit: count("commit"), file: count("file") },
    target,
  };
}

function summaryLine(r: TrialRecord): string {
  if (!r.reached) return `FAILED: ${r.error ?? "no outcome"}`;
  const ms = (v: number | null): string => (v === null ? "-" : `${Math.round(v)} ms`);
  return (
    `${r.oldHolder} g${r.oldGeneration} -> ${r.newHolder ?? "?"} g${r.newGeneration ?? "?"}: handover ${ms(r.handover)}` +
    (r.fromRelease === null ? "" : `, from release ${ms(r.fromRelease)}`) +
    `, first row ${ms(r.firstRow)}, first line ${ms(r.firstLine)}` +
    (r.oldWorkerGone === null ? "" : `, old worker gone at ${ms(r.oldWorkerGone)}`) +
    (r.processGap === null ? "" : ` (${r.processGap < 0 ? "AFTER" : "before"} the acquire by ${ms(Math.abs(r.processGap))})`) +
    (r.leadershipLost === null ? "" : `, leadership-lost at ${ms(r.leadershipLost)}`) +
    (r.notes.length > 0 ? ` (${r.notes.join("; ")})` : "")
  );
}

/**
 * The negative test: two postmasters without --cluster run the singleton host-scoped at once, with tokens 1
 * and 2, writing to their own table and file. The detector must report overlap in the database and outside.
 */
export async function runNegative(world: World, log: (line: string) => void = () => undefined): Promise<NegativeResult> {
  const file = new SharedFile(join(world.dir, "negative.log"));
  const url = `postgres://postgres@127.0.0.1:${world.pg.params.port}/postgres`;
  const nodes: ClusterNode[] = [];
  try {
    for (const token of [1, 2]) {
      nodes.push(
        await ClusterNode.start({
          label: `N${token}`,
          nodeId: `N${token}`,
          databaseUrl: url,
          cluster: null,
          env: { FAULT_SCOPE: "host", FAULT_TOKEN: String(token), FAULT_FILE: file.path, FAULT_TABLE: "fault_runs_negative" },
        }),
      );
    }
    // Both copies at work: ten lines each after both have begun.
    const enough = await nodes[0]!.until(() => {
      file.poll();
      const firstOf2 = file.lines.find((l) => l.generation === 2n);
      if (firstOf2 === undefined) return undefined;
      return file.lines.filter((l) => l.generation === 1n && l.monoNs > firstOf2.monoNs).length >= 10 ? true : undefined;
    }, 30_000);
    if (enough !== true) log(`negative test: the two host-scoped copies did not both write (${file.lines.length} lines)`);
  } finally {
    for (const node of nodes) await node.close();
  }
  file.poll();
  const report = overlapReport(await world.rows("fault_runs_negative"), file.lines);
  const result: NegativeResult = {
    rows: report.rows,
    lines: report.lines,
    database: report.database.length,
    commit: report.commit?.length ?? null,
    file: report.file.length,
    fired: report.database.length > 0 && report.file.length > 0,
    examples: [...report.database, ...(report.commit ?? []), ...report.file].slice(0, 3).map(describeOverlap),
  };
  log(`negative test (two host-scoped copies of ${WORKER_NAME}, tokens 1 and 2): ${result.fired ? "the detector fired" : "the detector did NOT fire"}: ` +
    `${result.database} in the database, ${result.commit ?? "-"} by commit time, ${result.file} outside, over ${result.rows} rows and ${result.lines} lines`);
  return result;
}
