/**
 * What a dynamic worker's handle is, apart from any process that works it: the reference, its string form
 * and the state a handle reports. Kept apart from the launcher so the pure state machine, the wire protocol
 * and the CLI can read and write handles without loading the launcher and what it pulls in. It imports only
 * errors.ts, itself a leaf, so importing it can never close an import cycle.
 */
import { makeError, type BackgroundWorkerStatus } from "./errors.js";

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

const HANDLE_PREFIX = "bgw1";

export function formatHandle(ref: HandleRef): string {
  return `${HANDLE_PREFIX}:${ref.postmaster}:${ref.slot}:${ref.generation}`;
}

/** Parses a handle string; throws a TypeError naming the value and the expected form. */
export function parseHandle(handle: string): HandleRef {
  const parts = typeof handle === "string" ? handle.split(":") : [];
  const [prefix, postmaster, slot, generation] = parts;
  // Canonical decimals only: Number() would also read "", " 1", "0x1" and "1e0", other spellings of a real handle.
  const decimal = (text: string | undefined): number => (text !== undefined && /^(?:0|[1-9][0-9]*)$/.test(text) ? Number(text) : NaN);
  const slotNumber = decimal(slot);
  const generationNumber = decimal(generation);
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
    throw makeError(
      TypeError,
      "ERR_BGWORKER_INVALID_HANDLE",
      `handle ${JSON.stringify(handle)} is not a background worker handle (expected "${HANDLE_PREFIX}:POSTMASTER:SLOT:GENERATION")`,
    );
  }
  return { postmaster, slot: slotNumber, generation: generationNumber };
}
