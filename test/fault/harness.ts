/**
 * The fault suite's frame: a case is a function that provokes faults against real processes and returns
 * its outcome and figures; the runner (run.ts, `npm run fault`) and the bounded test (a *.test.ts under
 * test/integration) run the same cases, at different sizes.
 */
import { readdirSync, readFileSync } from "node:fs";

/** Mulberry32: a small seeded generator, so a run is reproduced by its seed. */
export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }
  bytes(length: number): Buffer {
    const out = Buffer.alloc(length);
    for (let i = 0; i < length; i++) out[i] = this.int(0, 255);
    return out;
  }
}

export interface FaultScale {
  /** "bounded": the form `npm test` runs (a few seconds a case); "full": `npm run fault`. */
  readonly name: "bounded" | "full";
  readonly seed: number;
  /** Seconds of chaos. */
  readonly chaosSeconds: number;
  /** Fuzz cases per target. */
  readonly fuzzCases: number;
}

/**
 * Which cases run is each case's `bounded` mark, not the scale: the bounded form runs the database cases
 * marked bounded too (a server killed, every session terminated), each with a PostgreSQL cluster of its own.
 */
export const BOUNDED: FaultScale = { name: "bounded", seed: 20261125, chaosSeconds: 4, fuzzCases: 200 };
export const FULL: FaultScale = { name: "full", seed: 20261125, chaosSeconds: 20, fuzzCases: 2000 };

export interface Outcome {
  readonly ok: boolean;
  /** What was done and measured, e.g. { faults: 42, "restart counts": "exact" }. */
  readonly figures: Record<string, string | number>;
  /** Every broken expectation, one line each. */
  readonly failures: readonly string[];
}

export interface FaultCase {
  readonly id: string;
  readonly group: "chaos" | "database" | "storm" | "shutdown" | "fuzz" | "signals";
  readonly title: string;
  /** Runs in the bounded form too. */
  readonly bounded: boolean;
  /**
   * The feature this case checks is not built yet: the case runs and reports its outcome, but a failure is
   * expected and does not fail the run. Remove once the feature lands.
   */
  readonly awaits?: string;
  run(scale: FaultScale, log: (line: string) => void): Promise<Outcome>;
}

/** Collects failed expectations while a case runs, so that one run reports all of them. */
export class Expectations {
  readonly failures: string[] = [];
  readonly figures: Record<string, string | number> = {};
  expect(condition: boolean, message: string): void {
    if (!condition) this.failures.push(message);
  }
  figure(name: string, value: string | number): void {
    this.figures[name] = value;
  }
  outcome(): Outcome {
    return { ok: this.failures.length === 0, figures: this.figures, failures: this.failures };
  }
}

/** Resident set size and open file descriptors of a process, from /proc. */
export function footprint(pid: number): { rssKb: number; fds: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  return { rssKb, fds: readdirSync(`/proc/${pid}/fd`).length };
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
