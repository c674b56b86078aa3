/**
 * The cluster fault harness's overlap detector (test/cluster-fault/overlap.ts) and its percentiles
 * (stats.ts): a handover that overlaps must be seen, in the database (by sequence number and by commit
 * time) and outside it (by the monotonic clock), and a clean one must not be.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  anyOverlap,
  commitOverlaps,
  databaseOverlaps,
  describeOverlap,
  fileOverlaps,
  formatFileLine,
  overlapReport,
  parseFileLines,
  sharedGenerations,
  type FileLine,
  type RunRow,
} from "../cluster-fault/overlap.js";
import { judge, percentile, summarize } from "../cluster-fault/stats.js";

/** Rows in sequence order: [generation, node, insertedAt, committedAt]. */
function rows(...specs: [number, string, number, number | null][]): RunRow[] {
  return specs.map(([g, node, insertedAt, committedAt], i) => ({ generation: BigInt(g), node, seq: BigInt(i + 1), insertedAt, committedAt, pid: 100 + g }));
}

function lines(...specs: [number, string, number][]): FileLine[] {
  return specs.map(([g, node, mono]) => ({ generation: BigInt(g), node, monoNs: BigInt(mono), pid: 100 + g }));
}

describe("overlap in the database, by sequence number", () => {
  it("finds none in a clean handover chain", () => {
    const r = rows([1, "A1", 1, 2], [1, "A1", 3, 4], [2, "B1", 10, 11], [2, "B1", 12, 13], [3, "C1", 20, 21]);
    assert.deepEqual(databaseOverlaps(r), []);
  });

  it("finds a row of g after the first row of g+1: a double run", () => {
    const r = rows([1, "A1", 1, 2], [2, "B1", 10, 11], [1, "A1", 12, 13], [2, "B1", 14, 15]);
    const found = databaseOverlaps(r);
    assert.equal(found.length, 1);
    assert.equal(found[0]!.generation, 1n);
    assert.equal(found[0]!.laterGeneration, 2n);
    assert.equal(found[0]!.by, 1n); // seq 3 after seq 2
    assert.match(describeOverlap(found[0]!), /generation 1 \(node A1\) committed a row 1 sequence numbers after generation 2 \(node B1\) began/);
  });

  it("compares with every greater generation, not only g+1", () => {
    // Generation 2 never wrote; generation 3 began at seq 2; generation 1 wrote at seq 3.
    const r = rows([1, "A1", 1, 2], [3, "C1", 10, 11], [1, "A1", 12, 13]);
    const found = databaseOverlaps(r);
    assert.equal(found.length, 1);
    assert.equal(found[0]!.laterGeneration, 3n);
  });

  it("reports each late generation once, against the earliest later start", () => {
    const r = rows([1, "A1", 1, 2], [2, "B1", 3, 4], [3, "C1", 5, 6], [1, "A1", 7, 8], [2, "B1", 9, 10], [1, "A1", 11, 12]);
    const found = databaseOverlaps(r);
    assert.deepEqual(found.map((o) => [o.generation, o.laterGeneration]), [[1n, 2n], [2n, 3n]]);
  });

  it("does not depend on the order of the rows given", () => {
    const r = rows([1, "A1", 1, 2], [2, "B1", 10, 11], [1, "A1", 12, 13]);
    assert.deepEqual(databaseOverlaps([...r].reverse()), databaseOverlaps(r));
  });
});

describe("overlap in the database, by commit time", () => {
  it("catches a transaction that drew its sequence number early but committed after g+1 began", () => {
    // Generation 1's row has seq 1 (no overlap by sequence) but committed at 50, after generation 2's first insert at 10.
    const r = rows([1, "A1", 1, 50], [2, "B1", 10, 11]);
    assert.deepEqual(databaseOverlaps(r), []);
    const found = commitOverlaps(r);
    assert.equal(found?.length, 1);
    assert.equal(found![0]!.by, 40);
  });

  it("is null when no commit time is known", () => {
    assert.equal(commitOverlaps(rows([1, "A1", 1, null], [2, "B1", 10, null])), null);
  });

  it("finds none when every commit precedes the next generation's first insert", () => {
    assert.deepEqual(commitOverlaps(rows([1, "A1", 1, 2], [1, "A1", 3, 9], [2, "B1", 10, 11])), []);
  });
});

describe("overlap outside the database (the shared file)", () => {
  it("finds a line of g written after the first line of g+1", () => {
    const found = fileOverlaps(lines([1, "A1", 100], [2, "B1", 200], [1, "A1", 250]));
    assert.equal(found.length, 1);
    assert.equal(found[0]!.by, 50n);
    assert.equal(found[0]!.kind, "file");
  });

  it("finds none when g's last line precedes g+1's first", () => {
    assert.deepEqual(fileOverlaps(lines([1, "A1", 100], [1, "A1", 199], [2, "B1", 200], [3, "A2", 300])), []);
  });

  it("reads back what the worker writes, and sets torn lines aside", () => {
    const text = formatFileLine({ generation: 7n, node: "B2", monoNs: 123456789012345n, pid: 4242 }) + "7 B2 12345\n8 C1 1 2\n";
    const parsed = parseFileLines(text);
    assert.deepEqual(parsed.lines, [
      { generation: 7n, node: "B2", monoNs: 123456789012345n, pid: 4242 },
      { generation: 8n, node: "C1", monoNs: 1n, pid: 2 },
    ]);
    assert.deepEqual(parsed.bad, ["7 B2 12345"]);
  });
});

describe("a generation shared by two nodes", () => {
  it("is reported; one node per generation is not", () => {
    assert.deepEqual(sharedGenerations([...rows([1, "A1", 1, 2], [2, "B1", 3, 4]), ...lines([1, "A1", 1])]), []);
    assert.deepEqual(sharedGenerations(lines([1, "A1", 1], [1, "B1", 2])), [{ generation: 1n, nodes: ["A1", "B1"] }]);
  });
});

describe("the whole report", () => {
  it("says no overlap for a clean run and overlap for two holders at once", () => {
    const clean = overlapReport(rows([1, "A1", 1, 2], [2, "B1", 3, 4]), lines([1, "A1", 10], [2, "B1", 20]));
    assert.equal(anyOverlap(clean), false);
    assert.equal(clean.generations, 2);
    // Two host-scoped copies with tokens 1 and 2, interleaved: the negative test's shape.
    const twoHolders = overlapReport(
      rows([1, "N1", 1, 2], [2, "N2", 3, 4], [1, "N1", 5, 6], [2, "N2", 7, 8]),
      lines([1, "N1", 10], [2, "N2", 20], [1, "N1", 30], [2, "N2", 40]),
    );
    assert.equal(anyOverlap(twoHolders), true);
    assert.equal(twoHolders.database.length, 1);
    assert.equal(twoHolders.commit?.length, 1);
    assert.equal(twoHolders.file.length, 1);
  });
});

describe("percentiles", () => {
  it("are nearest-rank", () => {
    const values = Array.from({ length: 100 }, (_, i) => i + 1);
    assert.equal(percentile(values, 50), 50);
    assert.equal(percentile(values, 99), 99);
    assert.equal(percentile([5, 1, 3], 50), 3);
    assert.equal(percentile([5, 1, 3], 99), 5);
    assert.ok(Number.isNaN(percentile([], 50)));
    assert.throws(() => percentile([1], 0), RangeError);
  });

  it("summaries skip non-finite values, and targets are judged bound by bound", () => {
    const s = summarize([10, 20, NaN, 30]);
    assert.deepEqual({ n: s.n, p50: s.p50, max: s.max, mean: s.mean }, { n: 3, p50: 20, max: 30, mean: 20 });
    assert.deepEqual(judge(s, { p50: 100, p99: 25 }), { met: false, lines: ["p50 20 ms <= 100 ms: met", "p99 30 ms <= 25 ms: MISSED"] });
    assert.deepEqual(judge(s, undefined), { met: true, lines: [] });
  });
});
