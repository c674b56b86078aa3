/**
 * The one launcher: how any process starts dynamic workers and works their handles. It puts requests to a
 * `Requester`: in the postmaster's own process the postmaster itself, in a worker the request channel over
 * its IPC channel, anywhere else the request channel over the control socket. `loadDynamic()` and
 * `DynamicBackgroundWorker` are therefore the same code everywhere.
 */
import { admitLaunch } from "./admission.js";
import type { Requester } from "./control/channel.js";
import { handleStateFromWire, launchResultFromWire } from "./control/protocol.js";
import type { WorkerDefinition } from "./definition.js";
import { makeError, type BackgroundWorkerStatus } from "./errors.js";
import { newHandle, type DynamicBackgroundWorker } from "./handle.js";

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

/** What a `DynamicBackgroundWorker` asks about its worker. */
export interface HandleBackend {
  state(ref: HandleRef): Promise<HandleState>;
  /**
   * Resolves once the worker has started (with its pid) or stopped, or the postmaster has gone. Only the
   * worker's notify pid may wait: the postmaster judges a wait by the pid it knows the caller by, and
   * answers Untracked to any other.
   */
  waitForStartup(ref: HandleRef): Promise<HandleState>;
  /** Resolves once the worker has stopped, or the postmaster has gone; Untracked as above. */
  waitForShutdown(ref: HandleRef): Promise<HandleState>;
  terminate(ref: HandleRef): Promise<void>;
}

export class Launcher implements HandleBackend {
  readonly #requests: Requester;

  constructor(requests: Requester) {
    this.#requests = requests;
  }

  /** Registers `definition` as a dynamic worker; the admission check runs here first, and again in the postmaster. */
  async launch(definition: WorkerDefinition, startup?: () => void): Promise<DynamicBackgroundWorker> {
    admitLaunch({ definition, callerPid: process.pid, startup });
    const result = launchResultFromWire(await this.#requests.request({ op: "launch", definition }, "reject"));
    return newHandle(parseHandle(result.handle), result.notifyPid, this);
  }

  /** A handle from its string; waits are allowed only to its notify pid's process, which the postmaster knows. */
  attach(handle: string): DynamicBackgroundWorker {
    return newHandle(parseHandle(handle), 0, this);
  }

  state(ref: HandleRef): Promise<HandleState> {
    return this.#handleState("state", ref);
  }

  waitForStartup(ref: HandleRef): Promise<HandleState> {
    return this.#handleState("waitForStartup", ref);
  }

  waitForShutdown(ref: HandleRef): Promise<HandleState> {
    return this.#handleState("waitForShutdown", ref);
  }

  async terminate(ref: HandleRef): Promise<void> {
    await this.#requests.request({ op: "terminate", target: formatHandle(ref) }, "status-error");
  }

  async #handleState(op: "state" | "waitForStartup" | "waitForShutdown", ref: HandleRef): Promise<HandleState> {
    return handleStateFromWire(await this.#requests.request({ op, handle: formatHandle(ref) }, "postmaster-died"));
  }
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
