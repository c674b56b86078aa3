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
import { formatHandle, parseHandle, type HandleRef, type HandleState } from "./handle-format.js";
import { newHandle, type DynamicBackgroundWorker, type HandleBackend } from "./handle.js";

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
