/** What every measure gets: the user's project, its libraries, the built package, and the run's sizes. */
import type { Libraries } from "./libraries.js";
import type { Bgworker, Project } from "./project.js";

export interface Sizes {
  /** Samples per launch configuration (first and repeat, .ts and .js, each peer). */
  readonly launches: number;
  readonly burst: number;
  readonly restarts: number;
  readonly pingRounds: number;
  readonly parallelQueries: number;
  readonly spiLaunches: number;
  readonly selects: number;
  readonly staticWorkers: number;
  readonly idleSeconds: number;
  readonly statusSamples: number;
  readonly cycles: number;
}

export const FULL: Sizes = {
  launches: 21,
  burst: 50,
  restarts: 15,
  pingRounds: 1000,
  parallelQueries: 51,
  spiLaunches: 21,
  selects: 10_000,
  staticWorkers: 200,
  idleSeconds: 30,
  statusSamples: 21,
  cycles: 1000,
};

export const QUICK: Sizes = {
  launches: 7,
  burst: 50,
  restarts: 4,
  pingRounds: 300,
  parallelQueries: 15,
  spiLaunches: 7,
  selects: 2_000,
  staticWorkers: 40,
  idleSeconds: 5,
  statusSamples: 9,
  cycles: 100,
};

export interface Context {
  readonly project: Project;
  readonly libraries: Libraries;
  readonly bgw: Bgworker;
  readonly sizes: Sizes;
  readonly quick: boolean;
}
