/**
 * How a process reaches the postmaster about dynamic workers. The postmaster answers in-process, a worker
 * through its IPC channel, any other process through the control socket; all three implement this one
 * interface, so `loadDynamic()` and `DynamicBackgroundWorker` are the same code everywhere.
 */
import type { WorkerDefinition } from "./definition.js";
import type { BackgroundWorkerStatus } from "./errors.js";
import type { DynamicBackgroundWorker } from "./handle.js";

/** A slot and the generation it had when the worker was registered, PostgreSQL's `BackgroundWorkerHandle`. */
export interface HandleRef {
  readonly slot: number;
  readonly generation: number;
  /** Identifies the postmaster run, so a handle from an earlier run reports Stopped. */
  readonly postmaster: string;
}

export interface HandleState {
  readonly status: BackgroundWorkerStatus;
  readonly pid?: number;
}

export interface HandleBackend {
  state(ref: HandleRef): Promise<HandleState>;
  /**
   * Resolves once the worker has started (with its pid) or stopped, or the postmaster has gone. Only the
   * worker's notify pid may wait: the backend names its own process as the caller, and the postmaster
   * answers Untracked to any other.
   */
  waitForStartup(ref: HandleRef): Promise<HandleState>;
  /** Resolves once the worker has stopped, or the postmaster has gone; Untracked as above. */
  waitForShutdown(ref: HandleRef): Promise<HandleState>;
  terminate(ref: HandleRef): Promise<void>;
}

export interface DynamicLauncher extends HandleBackend {
  launch(definition: WorkerDefinition, startup?: () => void): Promise<DynamicBackgroundWorker>;
  attach(handle: string): DynamicBackgroundWorker;
}

const HANDLE_PREFIX = "bgw1";

export function formatHandle(ref: HandleRef): string {
  return `${HANDLE_PREFIX}:${ref.postmaster}:${ref.slot}:${ref.generation}`;
}

/** Parses a handle string; throws a TypeError naming the value and the expected form. */
export function parseHandle(handle: string): HandleRef {
  const parts = typeof handle === "string" ? handle.split(":") : [];
  const [prefix, postmaster, slot, generation] = parts;
  const slotNumber = Number(slot);
  const generationNumber = Number(generation);
  if (
    parts.length !== 4 ||
    prefix !== HANDLE_PREFIX ||
    postmaster === undefined ||
    !/^[0-9a-z.-]+$/i.test(postmaster) ||
    !Number.isSafeInteger(slotNumber) ||
    slotNumber < 0 ||
    !Number.isSafeInteger(generationNumber) ||
    generationNumber < 0
  ) {
    throw new TypeError(
      `handle ${JSON.stringify(handle)} is not a background worker handle (expected "${HANDLE_PREFIX}:POSTMASTER:SLOT:GENERATION")`,
    );
  }
  return { postmaster, slot: slotNumber, generation: generationNumber };
}
