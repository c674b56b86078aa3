/** The rows of the table: one measure, bgworker's figure against a peer's from the same run. */
import type { Summary } from "./stats.js";

export interface Row {
  readonly group: string;
  readonly measure: string;
  readonly unit: string;
  readonly bgworker: Summary;
  /** The peer's figure; absent for a measure judged against a target alone. */
  readonly peer?: Summary;
  readonly peerLabel?: string;
  /** peer p50 / bgworker p50 for times (higher is better for bgworker); bgworker / peer for rates. */
  readonly ratio?: number;
  /** The target from the issue, in words, and whether this run met it. */
  readonly target?: string;
  readonly met?: boolean;
  readonly note?: string;
}

const rows: Row[] = [];

export function addRow(row: Row): void {
  rows.push(row);
}

export function allRows(): readonly Row[] {
  return rows;
}

/** Puts the rows in the order of `groups` (rows are added as measures finish; launch waits for the database's peer). */
export function orderRows(groups: readonly string[]): void {
  const rank = (row: Row): number => groups.indexOf(row.group);
  const sorted = rows.map((row, i) => ({ row, i })).sort((a, b) => rank(a.row) - rank(b.row) || a.i - b.i);
  rows.splice(0, rows.length, ...sorted.map(({ row }) => row));
}

/** Extra figures that are not a comparison (RSS, file descriptors, counts), by name. */
const facts: Record<string, unknown> = {};

export function addFact(name: string, value: unknown): void {
  facts[name] = value;
}

export function allFacts(): Record<string, unknown> {
  return facts;
}

export function progress(text: string): void {
  process.stderr.write(`bench: ${new Date().toISOString().slice(11, 19)} ${text}\n`);
}

function figure(value: number, unit: string): string {
  if (!Number.isFinite(value)) return "-";
  if (unit === "ops/s") return value >= 1e6 ? `${(value / 1e6).toFixed(2)} M/s` : `${(value / 1e3).toFixed(1)} k/s`;
  return `${value < 10 ? value.toFixed(2) : value.toFixed(1)} ${unit}`;
}

export function printTable(): void {
  const lines = [["measure", "bgworker p50", "p99", "peer p50", "p99", "peer", "ratio", "target"]];
  for (const row of rows) {
    lines.push([
      row.measure,
      figure(row.bgworker.p50, row.unit),
      figure(row.bgworker.p99, row.unit),
      row.peer === undefined ? "" : figure(row.peer.p50, row.unit),
      row.peer === undefined ? "" : figure(row.peer.p99, row.unit),
      row.peerLabel ?? "",
      row.ratio === undefined ? "" : `${row.ratio.toFixed(2)}x`,
      row.target === undefined ? "" : `${row.met === true ? "met" : "MISSED"}: ${row.target}`,
    ]);
  }
  const widths = lines[0]!.map((_, i) => Math.max(...lines.map((line) => line[i]!.length)));
  const left = new Set([0, 5, 7]);
  const format = (line: string[]): string => line.map((cell, i) => (left.has(i) ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  ").trimEnd();
  console.log(format(lines[0]!));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const line of lines.slice(1)) console.log(format(line));
  console.log("ratio: how many times faster (or more) bgworker is than the peer, from the medians of the same run");
}

/** A figure as docs/performance.md writes it: µs for us, seconds from 10 s up. */
function docFigure(value: number, unit: string): string {
  if (!Number.isFinite(value)) return "-";
  if (unit === "ms" && value >= 10_000) return `${(value / 1000).toFixed(2)} s`;
  const shown = unit === "us" ? "µs" : unit;
  return `${value < 10 ? value.toFixed(2) : value.toFixed(1)} ${shown}`;
}

/** The table of docs/performance.md ("Last run"), from the rows. */
export function markdownTable(): string {
  const lines = ["| measure | bgworker p50 | p99 | peer | peer p50 | p99 | ratio | target |", "| --- | --- | --- | --- | --- | --- | --- | --- |"];
  for (const row of rows) {
    const cells = [
      row.note === undefined ? row.measure : `${row.measure} (${row.note})`,
      docFigure(row.bgworker.p50, row.unit),
      docFigure(row.bgworker.p99, row.unit),
      row.peerLabel ?? "",
      row.peer === undefined ? "" : docFigure(row.peer.p50, row.unit),
      row.peer === undefined ? "" : docFigure(row.peer.p99, row.unit),
      row.ratio === undefined ? "" : `${Number(row.ratio.toFixed(2))}x`,
      row.target === undefined ? "" : `${row.met === true ? "met" : "**missed**"}: ${row.target}`,
    ];
    lines.push(`| ${cells.join(" | ")} |`);
  }
  return lines.join("\n");
}
