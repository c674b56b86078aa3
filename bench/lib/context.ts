/** What every measure gets: the user's project, its libraries, the built package, and the run's sizes. */
import type { Libraries } from "./libraries.js";
import type { Bgworker, Project } from "./project.js";

export interface Sizes {
  /** Samples per launch configuration (first and repeat, .ts and .js) and of PM2's start. */
  readonly launches: number;
  /** Cold `child_process.fork` samples (cheap: more of them than launches in quick mode). */
  readonly coldForks: number;
  /** Fresh Node processes that time esbuild's first start (a first `.ts` import against a second one). */
  readonly esbuildStarts: number;
  readonly burst: number;
  readonly restarts: number;
  /** `process.exit()` -> the parent's 'exit' event, per kind of process (bare, and shaped as a worker). */
  readonly exits: number;
  readonly pingRounds: number;
  readonly parallelQueries: number;
  readonly spiLaunches: number;
  readonly selects: number;
  /** Rounds of the SPI overhead measure, and the pause before each driver measures (as the SPI worker's). */
  readonly overheadRounds: number;
  readonly overheadPauseMs: number;
  readonly staticWorkers: number;
  /** After every static worker runs, before idle CPU and memory are read: V8's post-start-up work passes. */
  readonly settleSeconds: number;
  readonly idleSeconds: number;
  readonly statusSamples: number;
  readonly cycles: number;
  /** The longest wait for the machine to go quiet before a group (see quiet.ts). */
  readonly quietSeconds: number;
  /** Light group: runner boots (each beside `node -e 0` and one process of each shape). */
  readonly lightSamples: number;
  /** Light group: after the spares have booted, before memory is read. */
  readonly lightSettleSeconds: number;
  /** Many idle workers at once (scale rows beside the bare-fork floor and PM2), one run per size. */
  readonly many: readonly number[];
  /**
   * Rounds of the first size (the one with a target): the floor and bgworker alternate, each side's median
   * round is reported and the median of the rounds' own ratios judged, so that one round's luck on a shared
   * machine decides nothing. Larger sizes run once.
   */
  readonly manyRounds: number;
  /** PM2 runs for the sizes up to this one. */
  readonly manyPm2Max: number;
  /** After all run and the machine went quiet, before the tree's memory is read. */
  readonly manySettleSeconds: number;
}

/**
 * About 15 minutes on 2 CPUs, of which the light group and the many-workers rows take about 5 (their 1,000
 * workers and 1,000 bare processes need about 17 and 9 GB of memory at once on Node 26; a size that would not
 * fit in the available memory is skipped and says so).
 */
export const FULL: Sizes = {
  launches: 21,
  coldForks: 21,
  esbuildStarts: 11,
  burst: 50,
  restarts: 15,
  exits: 21,
  pingRounds: 1000,
  parallelQueries: 51,
  spiLaunches: 21,
  selects: 10_000,
  overheadRounds: 3,
  overheadPauseMs: 3000,
  staticWorkers: 200,
  settleSeconds: 20,
  idleSeconds: 30,
  statusSamples: 21,
  cycles: 1000,
  quietSeconds: 60,
  lightSamples: 11,
  lightSettleSeconds: 5,
  many: [200, 1000],
  manyRounds: 3,
  manyPm2Max: 200,
  manySettleSeconds: 10,
};

/**
 * About a minute on 2 quiet CPUs (the build aside): every measure runs, with at least 11 samples where a sample
 * is cheap; a launch (it waits for its spare's replacement to boot), a restart (a worker runs a second) and an
 * SPI first query take 3 each, and the cycles 15.
 */
export const QUICK: Sizes = {
  launches: 3,
  coldForks: 11,
  esbuildStarts: 3,
  burst: 12,
  restarts: 3,
  exits: 5,
  pingRounds: 300,
  parallelQueries: 15,
  spiLaunches: 3,
  selects: 2_000,
  overheadRounds: 1,
  overheadPauseMs: 500,
  staticWorkers: 6,
  settleSeconds: 2,
  idleSeconds: 2,
  statusSamples: 11,
  cycles: 15,
  quietSeconds: 3,
  lightSamples: 3,
  lightSettleSeconds: 1,
  many: [20],
  manyRounds: 1,
  manyPm2Max: 20,
  manySettleSeconds: 2,
};

export interface Context {
  readonly project: Project;
  readonly libraries: Libraries;
  readonly bgw: Bgworker;
  readonly sizes: Sizes;
  readonly quick: boolean;
}
