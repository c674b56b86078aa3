/**
 * A worker definition: what `BackgroundWorkerBuilder` produces, frozen and JSON-safe, because it crosses
 * process boundaries (to the worker runner, and over the control socket). PostgreSQL's `BackgroundWorker`
 * struct plays the same part.
 */

/**
 * A by-value argument, as PostgreSQL's `bgw_main_arg`: a worker is another process, so only values that
 * are copied whole can be passed. The worker receives the same value with the same JavaScript type.
 */
export type Datum = number | bigint | boolean | null;

/** The largest process id a definition, a handle or a request may name (pid_t's bound). */
export const MAX_PID = 2 ** 31 - 1;

/** When the postmaster starts a worker, relative to the served database's state. */
export enum BgWorkerStartTime {
  /** As soon as the postmaster has started. */
  PostmasterStart = 0,
  /** Once the server accepts read-only connections (a hot standby counts). */
  ConsistentState = 1,
  /** Once the server accepts writes. */
  RecoveryFinished = 2,
}

export const START_TIME_NAMES: Readonly<Record<BgWorkerStartTime, string>> = {
  [BgWorkerStartTime.PostmasterStart]: "PostmasterStart",
  [BgWorkerStartTime.ConsistentState]: "ConsistentState",
  [BgWorkerStartTime.RecoveryFinished]: "RecoveryFinished",
};

/**
 * Where a worker runs when several postmasters form a cluster (SPEC §10): `host`, every postmaster runs its
 * own copy (as without a cluster); `cluster`, it runs exactly once across the cluster, on the node that
 * holds its lease.
 */
export type WorkerScope = "host" | "cluster";

export const WORKER_SCOPES: readonly WorkerScope[] = ["host", "cluster"];

/** `Datum` in a form JSON carries without loss (bigints as decimal strings). */
export type EncodedDatum =
  | { readonly kind: "null" }
  | { readonly kind: "number"; readonly value: number }
  | { readonly kind: "bigint"; readonly value: string }
  | { readonly kind: "boolean"; readonly value: boolean };

export interface WorkerDefinition {
  readonly name: string;
  readonly type: string;
  /** Module specifier as given: a path (relative to the postmaster's working directory) or a package name. */
  readonly library: string;
  readonly function: string;
  readonly startTime: BgWorkerStartTime;
  /** Milliseconds to wait before a restart after exit code 1 or a crash; `null` never restarts. */
  readonly restartTimeMs: number | null;
  readonly argument: EncodedDatum;
  /** `bgw_extra`, base64 of at most 128 bytes. */
  readonly extra: string;
  readonly spi: boolean;
  readonly shmem: boolean;
  /** Process told when the worker starts and stops; 0 for none. Static workers always have 0. */
  readonly notifyPid: number;
  /** `host` unless `setScope("cluster")`: then it runs once across a cluster of postmasters. */
  readonly scope: WorkerScope;
}

export function encodeDatum(value: Datum): EncodedDatum {
  if (value === null) return { kind: "null" };
  switch (typeof value) {
    case "number":
      return { kind: "number", value };
    case "bigint":
      return { kind: "bigint", value: value.toString() };
    case "boolean":
      return { kind: "boolean", value };
  }
}

export function decodeDatum(encoded: EncodedDatum): Datum {
  switch (encoded.kind) {
    case "null":
      return null;
    case "number":
      return encoded.value;
    case "bigint":
      return BigInt(encoded.value);
    case "boolean":
      return encoded.value;
  }
}

export function extraBytes(definition: WorkerDefinition): Uint8Array {
  return new Uint8Array(Buffer.from(definition.extra, "base64"));
}
