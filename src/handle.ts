/** `DynamicBackgroundWorker`: a handle to a dynamic worker, usable from any process that reaches the postmaster. */
import { BackgroundWorkerStatus, BackgroundWorkerStatusError } from "./errors.js";
import { formatHandle, type HandleRef, type HandleState } from "./handle-format.js";

/** What a `DynamicBackgroundWorker` asks about its worker: the launcher of its process answers. */
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

/** Set by the classes below: only this package makes handles (from `loadDynamic()` or `attach()`). */
let makeHandle: (ref: HandleRef, notifyPid: number, backend: HandleBackend) => DynamicBackgroundWorker;
let makeTerminating: (worker: DynamicBackgroundWorker, sent: Promise<void>) => TerminatingDynamicBackgroundWorker;

/** A handle to the worker `ref` names, working through `backend` (the launcher of this process). */
export function newHandle(ref: HandleRef, notifyPid: number, backend: HandleBackend): DynamicBackgroundWorker {
  return makeHandle(ref, notifyPid, backend);
}

function statusError(state: HandleState, what: string): BackgroundWorkerStatusError {
  return new BackgroundWorkerStatusError(state.status, `${what}: background worker is ${state.status}`);
}

export class DynamicBackgroundWorker {
  /** The process told when the worker starts and stops; only it may wait on the handle. 0: untracked. */
  readonly notifyPid: number;
  /** Serialisable: another process may `attach()` to it to query or terminate the worker. */
  readonly handle: string;
  readonly #ref: HandleRef;
  readonly #backend: HandleBackend;

  static {
    makeHandle = (ref, notifyPid, backend) => new DynamicBackgroundWorker(ref, notifyPid, backend);
  }

  /** Handles come from `loadDynamic()` or `PostmasterClient#attach()`. */
  private constructor(ref: HandleRef, notifyPid: number, backend: HandleBackend) {
    this.#ref = ref;
    this.#backend = backend;
    this.notifyPid = notifyPid;
    this.handle = formatHandle(ref);
  }

  /** The worker's pid; rejects with `BackgroundWorkerStatusError` unless it is Started. */
  async pid(): Promise<number> {
    const state = await this.#backend.state(this.#ref);
    if (state.status !== BackgroundWorkerStatus.Started || state.pid === undefined) throw statusError(state, "pid");
    return state.pid;
  }

  async status(): Promise<BackgroundWorkerStatus> {
    return (await this.#backend.state(this.#ref)).status;
  }

  /** The pid once the worker's function has been entered; rejects Stopped, PostmasterDied or Untracked. */
  async waitForStartup(): Promise<number> {
    const state = await this.#backend.waitForStartup(this.#ref);
    if (state.status !== BackgroundWorkerStatus.Started || state.pid === undefined) throw statusError(state, "waitForStartup");
    return state.pid;
  }

  /** Resolves once the worker has stopped; rejects PostmasterDied or Untracked. */
  async waitForShutdown(): Promise<void> {
    const state = await this.#backend.waitForShutdown(this.#ref);
    if (state.status !== BackgroundWorkerStatus.Stopped) throw statusError(state, "waitForShutdown");
  }

  /** SIGTERM if running, unregistered if not yet started; never restarted after. */
  terminate(): TerminatingDynamicBackgroundWorker {
    return makeTerminating(this, this.#backend.terminate(this.#ref));
  }
}

/** What `terminate()` returns: the request is under way; `waitForShutdown()` waits for the worker to be gone. */
export class TerminatingDynamicBackgroundWorker {
  readonly #worker: DynamicBackgroundWorker;
  readonly #sent: Promise<void>;

  static {
    makeTerminating = (worker, sent) => new TerminatingDynamicBackgroundWorker(worker, sent);
  }

  private constructor(worker: DynamicBackgroundWorker, sent: Promise<void>) {
    this.#worker = worker;
    this.#sent = sent;
    // A caller that never waits must not see an unhandled rejection; waitForShutdown re-raises it.
    sent.catch(() => undefined);
  }

  get handle(): string {
    return this.#worker.handle;
  }

  async waitForShutdown(): Promise<void> {
    await this.#sent;
    await this.#worker.waitForShutdown();
  }
}
