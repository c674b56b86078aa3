/**
 * Figures of the cluster fault harness: percentiles of handover times, and the targets of issue #20 they are
 * held against. Pure.
 *
 * Percentiles are nearest-rank (the value at rank ceil(p/100 * n)): with 50 trials, p99 is the largest but
 * none; with fewer than 100, p99 is the maximum. A figure of fewer trials says less, and the report says how
 * many there were.
 */

export interface Summary {
  readonly n: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly mean: number;
}

/** Nearest-rank percentile of `values` (NaN when empty). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  if (!(p > 0 && p <= 100)) throw new RangeError(`percentile ${p} must be in (0, 100]`);
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export function summarize(values: readonly number[]): Summary {
  const finite = values.filter((v) => Number.isFinite(v));
  return {
    n: finite.length,
    p50: percentile(finite, 50),
    p99: percentile(finite, 99),
    max: finite.length === 0 ? NaN : Math.max(...finite),
    mean: finite.length === 0 ? NaN : finite.reduce((a, b) => a + b, 0) / finite.length,
  };
}

/** A target of issue #20 ("Must show"), for the figures of one fault. */
export interface Target {
  readonly p50?: number;
  readonly p99?: number;
}

/** Issue #20's handover targets, with the default lease (5000 ms) and renewal (1000 ms). */
export const TARGETS: Readonly<Record<string, Target>> = {
  graceful: { p50: 100, p99: 300 },
  kill: { p50: 700, p99: 1500 },
  freeze: { p99: 7000 },
  relay: { p99: 7000 },
  netns: { p99: 7000 },
};

/** Whether `summary` meets `target`: one line per bound ("p50 62 ms <= 100: met"). */
export function judge(summary: Summary, target: Target | undefined): { met: boolean; lines: string[] } {
  if (target === undefined || summary.n === 0) return { met: true, lines: [] };
  const lines: string[] = [];
  let met = true;
  for (const key of ["p50", "p99"] as const) {
    const bound = target[key];
    if (bound === undefined) continue;
    const ok = summary[key] <= bound;
    met &&= ok;
    lines.push(`${key} ${ms(summary[key])} <= ${bound} ms: ${ok ? "met" : "MISSED"}`);
  }
  return { met, lines };
}

/** A duration in ms for a report: integers above 10 ms, one decimal below. */
export function ms(value: number): string {
  if (!Number.isFinite(value)) return "-";
  return value >= 10 ? `${Math.round(value)} ms` : `${value.toFixed(1)} ms`;
}
