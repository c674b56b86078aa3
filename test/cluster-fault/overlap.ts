/**
 * The overlap detector of the cluster fault harness: did two holders of one cluster-scoped worker ever act
 * at once? Pure functions over what the singleton worker left behind (fixtures/worker.ts), no I/O.
 *
 * Two records, two questions (SPEC §10, docs/cluster.md "Fencing"):
 * - **In the database** (table `fault_runs`): every transaction of the worker inserts
 *   `(generation, node, nextval(seq), clock_timestamp())`. A **double run** is a committed row of generation g
 *   whose sequence number is greater than that of the first row of any generation g' > g: generation g still
 *   committed work after g' had begun. When the server tracks commit timestamps, a stronger check too: no
 *   row of g *committed* after the first row of any g' > g was inserted (a transaction of g that drew its
 *   sequence number early but committed late is caught by this one only).
 * - **Outside the database** (the shared file): after each commit the worker appends one line
 *   `generation node monotonic-ns pid`, on the host's monotonic clock (process.hrtime.bigint() is
 *   CLOCK_MONOTONIC on Linux: one clock for every process of the host). An **overlap outside** is a line of
 *   generation g written later than the first line of any generation g' > g. The database cannot fence this
 *   one; the lease's bounds must (the holder kills its worker before its lease can expire), except for a
 *   holder frozen together with its worker, which docs/cluster.md names as the case left.
 * - In both: every row of one generation comes from one node (a generation is one grant to one node).
 *
 * All three reduce to: for each generation g, the earliest "first mark" among generations greater than g;
 * any mark of g after it is an overlap. O(n log n).
 */

/** One committed row of `fault_runs`. Times are the server's clock, in ms since the epoch. */
export interface RunRow {
  readonly generation: bigint;
  readonly node: string;
  readonly seq: bigint;
  /** clock_timestamp() at the insert. */
  readonly insertedAt: number;
  /** pg_xact_commit_timestamp(xmin), when the server tracks commit timestamps; else null. */
  readonly committedAt: number | null;
  readonly pid: number;
}

/** One line of the shared file. */
export interface FileLine {
  readonly generation: bigint;
  readonly node: string;
  /** The host's monotonic clock when the line was written, in ns. */
  readonly monoNs: bigint;
  readonly pid: number;
}

/** A mark of generation `generation` (by `node`) that came after `laterGeneration` had begun. */
export interface Overlap {
  readonly kind: "database" | "commit" | "file";
  readonly generation: bigint;
  readonly node: string;
  readonly laterGeneration: bigint;
  readonly laterNode: string;
  /** By how much the mark came late: sequence numbers (database), ms (commit), ns (file). */
  readonly by: bigint | number;
  /** The mark itself, for the report: seq, commit time or monotonic time. */
  readonly mark: string;
}

/** A generation whose marks come from more than one node: two grants with one token. */
export interface SharedGeneration {
  readonly generation: bigint;
  readonly nodes: readonly string[];
}

export interface OverlapReport {
  readonly rows: number;
  readonly lines: number;
  readonly generations: number;
  /** Double runs in the database, by sequence number. */
  readonly database: readonly Overlap[];
  /** Double runs in the database, by commit time; null when commit timestamps are not tracked. */
  readonly commit: readonly Overlap[] | null;
  /** Overlaps outside the database, from the shared file. */
  readonly file: readonly Overlap[];
  readonly shared: readonly SharedGeneration[];
}

/** A mark on some ordered axis: a sequence number, a time. */
interface Mark<T extends bigint | number> {
  readonly generation: bigint;
  readonly node: string;
  readonly at: T;
  readonly label: string;
}

const compareBig = (a: bigint, b: bigint): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The generic detector: `firstOf` gives the mark that opens each generation (its start), `marksOf` every mark
 * that must come before any later generation's start. A mark of g later than the start of some g' > g is an
 * overlap, reported once per generation g: its latest mark against the earliest start of a greater generation.
 */
function detect<T extends bigint | number>(
  kind: Overlap["kind"],
  starts: readonly Mark<T>[],
  marks: readonly Mark<T>[],
  minus: (a: T, b: T) => T,
): Overlap[] {
  // The start of each generation: its earliest mark.
  const first = new Map<bigint, Mark<T>>();
  for (const s of starts) {
    const seen = first.get(s.generation);
    if (seen === undefined || s.at < seen.at) first.set(s.generation, s);
  }
  const generations = [...first.keys()].sort(compareBig);
  // suffix[i]: the earliest start among generations[i..] (a suffix minimum).
  const suffix: Mark<T>[] = new Array<Mark<T>>(generations.length);
  for (let i = generations.length - 1; i >= 0; i--) {
    const start = first.get(generations[i]!)!;
    const next = suffix[i + 1];
    suffix[i] = next !== undefined && next.at < start.at ? next : start;
  }
  /** The earliest start among generations greater than g. */
  const earliestLater = (g: bigint): Mark<T> | undefined => {
    let lo = 0;
    let hi = generations.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (generations[mid]! <= g) lo = mid + 1;
      else hi = mid;
    }
    return suffix[lo];
  };
  // The latest mark of each generation, and whether it comes after the earliest later start.
  const latest = new Map<bigint, Mark<T>>();
  for (const m of marks) {
    const seen = latest.get(m.generation);
    if (seen === undefined || m.at > seen.at) latest.set(m.generation, m);
  }
  const out: Overlap[] = [];
  for (const [g, last] of latest) {
    const later = earliestLater(g);
    if (later === undefined || !(last.at > later.at)) continue;
    out.push({ kind, generation: g, node: last.node, laterGeneration: later.generation, laterNode: later.node, by: minus(last.at, later.at), mark: last.label });
  }
  return out.sort((a, b) => compareBig(a.generation, b.generation));
}

/** Double runs by sequence number: a row of g with a greater seq than the first row of some g' > g. */
export function databaseOverlaps(rows: readonly RunRow[]): Overlap[] {
  const marks = rows.map((r) => ({ generation: r.generation, node: r.node, at: r.seq, label: `seq ${r.seq}` }));
  return detect("database", marks, marks, (a, b) => a - b);
}

/**
 * Double runs by commit time: a row of g committed after the first row of some g' > g was inserted (both by
 * the server's clock). Null when no row has a commit time (track_commit_timestamp off).
 */
export function commitOverlaps(rows: readonly RunRow[]): Overlap[] | null {
  if (!rows.some((r) => r.committedAt !== null)) return null;
  const starts = rows.map((r) => ({ generation: r.generation, node: r.node, at: r.insertedAt, label: `inserted ${iso(r.insertedAt)}` }));
  const marks = rows
    .filter((r) => r.committedAt !== null)
    .map((r) => ({ generation: r.generation, node: r.node, at: r.committedAt!, label: `seq ${r.seq} committed ${iso(r.committedAt!)}` }));
  return detect("commit", starts, marks, (a, b) => a - b);
}

/** Overlap outside the database: a line of g written after the first line of some g' > g (monotonic clock). */
export function fileOverlaps(lines: readonly FileLine[]): Overlap[] {
  const marks = lines.map((l) => ({ generation: l.generation, node: l.node, at: l.monoNs, label: `${l.monoNs} ns (pid ${l.pid})` }));
  return detect("file", marks, marks, (a, b) => a - b);
}

/** Generations whose marks come from more than one node. */
export function sharedGenerations(rows: readonly { generation: bigint; node: string }[]): SharedGeneration[] {
  const nodes = new Map<bigint, Set<string>>();
  for (const r of rows) {
    let set = nodes.get(r.generation);
    if (set === undefined) nodes.set(r.generation, (set = new Set()));
    set.add(r.node);
  }
  return [...nodes]
    .filter(([, set]) => set.size > 1)
    .map(([generation, set]) => ({ generation, nodes: [...set].sort() }))
    .sort((a, b) => compareBig(a.generation, b.generation));
}

/** Everything at once. */
export function overlapReport(rows: readonly RunRow[], lines: readonly FileLine[]): OverlapReport {
  return {
    rows: rows.length,
    lines: lines.length,
    generations: new Set([...rows.map((r) => r.generation), ...lines.map((l) => l.generation)]).size,
    database: databaseOverlaps(rows),
    commit: commitOverlaps(rows),
    file: fileOverlaps(lines),
    shared: sharedGenerations([...rows, ...lines]),
  };
}

/** Whether the report shows any overlap at all (in the database, by commit time, outside, or a shared token). */
export function anyOverlap(report: OverlapReport): boolean {
  return report.database.length > 0 || (report.commit?.length ?? 0) > 0 || report.file.length > 0 || report.shared.length > 0;
}

/**
 * Parses the shared file: one `generation node monotonic-ns pid` line each. A torn or foreign line is
 * returned in `bad` (O_APPEND writes of one short line are atomic, so there should be none).
 */
export function parseFileLines(text: string): { lines: FileLine[]; bad: string[] } {
  const lines: FileLine[] = [];
  const bad: string[] = [];
  for (const raw of text.split("\n")) {
    if (raw === "") continue;
    const m = /^(\d+) (\S+) (\d+) (\d+)$/.exec(raw);
    if (m === null) {
      bad.push(raw);
      continue;
    }
    lines.push({ generation: BigInt(m[1]!), node: m[2]!, monoNs: BigInt(m[3]!), pid: Number(m[4]) });
  }
  return { lines, bad };
}

/** One line of the shared file, as the worker writes it. */
export function formatFileLine(line: FileLine): string {
  return `${line.generation} ${line.node} ${line.monoNs} ${line.pid}\n`;
}

/** One line of text for an overlap, for reports and assertion messages. */
export function describeOverlap(o: Overlap): string {
  const unit = o.kind === "database" ? "sequence numbers" : o.kind === "commit" ? "ms" : "ns";
  const where = o.kind === "file" ? "wrote a line" : o.kind === "commit" ? "committed" : "committed a row";
  return `generation ${o.generation} (node ${o.node}) ${where} ${o.by} ${unit} after generation ${o.laterGeneration} (node ${o.laterNode}) began: ${o.mark}`;
}

function iso(ms: number): string {
  return Number.isFinite(ms) ? new Date(ms).toISOString() : String(ms);
}
