/** Medians, p99 and ratios: every figure of the benchmark is one of these over its samples. */

export interface Summary {
  readonly n: number;
  readonly p50: number;
  readonly p99: number;
  readonly min: number;
  readonly max: number;
}

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  // Nearest rank: with few samples p99 is the largest, as it should be (no interpolation below the max).
  const rank = Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1);
  return sorted[Math.max(0, rank)]!;
}

export function summarize(samples: readonly number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  return { n: sorted.length, p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), min: sorted[0] ?? Number.NaN, max: sorted[sorted.length - 1] ?? Number.NaN };
}

export function median(samples: readonly number[]): number {
  return summarize(samples).p50;
}

/**
 * Of several rounds of one measure, the round whose `allMs` is the median (a round that did not finish, NaN,
 * counts as the slowest), with every round's time beside it in run order: the rest of its record (CPU,
 * memory) comes with it, from the same round. One round is returned as it is.
 */
export function medianRound<S extends { readonly allMs: number }>(rounds: readonly S[]): S & { readonly rounds?: readonly number[] } {
  if (rounds.length === 0) throw new Error("medianRound: no rounds");
  if (rounds.length === 1) return rounds[0]!;
  const key = (round: S): number => (Number.isFinite(round.allMs) ? round.allMs : Number.POSITIVE_INFINITY);
  const middle = [...rounds].sort((a, b) => key(a) - key(b))[Math.floor((rounds.length - 1) / 2)]!;
  return { ...middle, rounds: rounds.map((round) => round.allMs) };
}

/**
 * The median of `ours[i] / peers[i]` over the rounds where both finished (NaN when none did): with rounds that
 * alternate the two sides, each pair ran under the same machine's state, so the ratio of a pair is what one
 * round says, and its median is what the rounds say together.
 */
export function pairedRatio(ours: readonly number[], peers: readonly number[]): number {
  if (ours.length !== peers.length) throw new Error(`pairedRatio: ${ours.length} rounds against ${peers.length}`);
  const ratios = ours.flatMap((value, i) => {
    const peer = peers[i]!;
    return Number.isFinite(value) && Number.isFinite(peer) && peer > 0 ? [value / peer] : [];
  });
  return ratios.length === 0 ? Number.NaN : median(ratios);
}

export const round = (value: number, digits = 3): number => (Number.isFinite(value) ? Number(value.toFixed(digits)) : value);

/** Wall-clock milliseconds with microsecond resolution, comparable across processes of this machine. */
export const now = (): number => performance.timeOrigin + performance.now();

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 60_000, everyMs = 2): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`bench: timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}
