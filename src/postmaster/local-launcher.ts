/**
 * Dynamic workers from inside the postmaster process: `loadDynamic()` and handles talk to the postmaster
 * directly, with this process as the caller.
 */
import type { ControlHandler } from "../control/handler.js";
import type { WorkerDefinition } from "../definition.js";
import { DynamicBackgroundWorker } from "../handle.js";
import { parseHandle, type DynamicLauncher, type HandleRef, type HandleState } from "../launcher.js";

export class LocalLauncher implements DynamicLauncher {
  constructor(private readonly handler: ControlHandler) {}

  async launch(definition: WorkerDefinition, startup?: () => void): Promise<DynamicBackgroundWorker> {
    if (startup !== undefined) {
      throw new TypeError(
        `loadDynamic: background worker "${definition.name}": shared memory startup hooks belong to static ` +
          `registration in _PG_init; initialise shared memory there`,
      );
    }
    return new DynamicBackgroundWorker(this.handler.launch(definition), definition.notifyPid, this);
  }

  attach(handle: string): DynamicBackgroundWorker {
    return new DynamicBackgroundWorker(parseHandle(handle), 0, this);
  }

  async state(ref: HandleRef): Promise<HandleState> {
    return this.handler.state(ref);
  }

  waitForStartup(ref: HandleRef): Promise<HandleState> {
    return this.handler.waitForStartup(ref, process.pid);
  }

  waitForShutdown(ref: HandleRef): Promise<HandleState> {
    return this.handler.waitForShutdown(ref, process.pid);
  }

  async terminate(ref: HandleRef): Promise<void> {
    this.handler.terminate(ref);
  }
}
