/**
 * Dynamic workers from inside a worker: requests travel to the postmaster over the IPC channel and their
 * replies come back by id. The postmaster knows the caller's pid from the channel itself.
 */
import type { WorkerDefinition } from "../definition.js";
import { BackgroundWorkerStatus, errorFromWire } from "../errors.js";
import { DynamicBackgroundWorker } from "../handle.js";
import { handleStateFromWire, launchResultFromWire, type WireRequest } from "../control/protocol.js";
import { formatHandle, parseHandle, type DynamicLauncher, type HandleRef, type HandleState } from "../launcher.js";
import type { FromRunner, ReplyMessage } from "./ipc.js";

type Send = (message: FromRunner) => void;

/** A request before the launcher numbers it. */
type Unnumbered<T> = T extends unknown ? Omit<T, "id"> : never;

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
  /** What the request resolves to if the postmaster dies first; undefined rejects instead. */
  onDeath: HandleState | undefined;
}

const DIED: HandleState = Object.freeze({ status: BackgroundWorkerStatus.PostmasterDied });

export class WorkerLauncher implements DynamicLauncher {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  constructor(private readonly send: Send) {
    // Requests still waiting when the postmaster dies learn it at once.
    process.once("disconnect", () => {
      for (const [id, waiter] of this.pending) {
        this.pending.delete(id);
        settleOnDeath(waiter.onDeath, waiter.resolve, waiter.reject);
      }
    });
  }

  async launch(definition: WorkerDefinition, startup?: () => void): Promise<DynamicBackgroundWorker> {
    if (startup !== undefined) {
      throw new TypeError(
        `loadDynamic: background worker "${definition.name}": a shared memory startup hook runs in the postmaster; ` +
          `register it from an extension's _PG_init, not from a worker`,
      );
    }
    const result = launchResultFromWire(await this.request({ op: "launch", definition }, undefined));
    return new DynamicBackgroundWorker(parseHandle(result.handle), definition.notifyPid, this);
  }

  attach(handle: string): DynamicBackgroundWorker {
    const ref = parseHandle(handle);
    // The notify pid is the launcher's business; the postmaster judges every wait by the caller's pid.
    return new DynamicBackgroundWorker(ref, 0, this);
  }

  state(ref: HandleRef): Promise<HandleState> {
    return this.handleState("state", ref);
  }

  waitForStartup(ref: HandleRef): Promise<HandleState> {
    return this.handleState("waitForStartup", ref);
  }

  waitForShutdown(ref: HandleRef): Promise<HandleState> {
    return this.handleState("waitForShutdown", ref);
  }

  async terminate(ref: HandleRef): Promise<void> {
    await this.request({ op: "terminate", target: formatHandle(ref) }, DIED);
  }

  private async handleState(op: "state" | "waitForStartup" | "waitForShutdown", ref: HandleRef): Promise<HandleState> {
    return handleStateFromWire(await this.request({ op, handle: formatHandle(ref) }, DIED));
  }

  reply(message: ReplyMessage): void {
    const waiter = this.pending.get(message.id);
    if (waiter === undefined) return;
    this.pending.delete(message.id);
    if (message.ok) waiter.resolve(message.result);
    else waiter.reject(errorFromWire(message.error ?? { name: "Error", message: "request failed" }));
  }

  private request(request: Unnumbered<WireRequest>, onDeath: HandleState | undefined): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (!process.connected) return settleOnDeath(onDeath, resolve, reject);
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject, onDeath });
      this.send({ t: "request", request: { ...request, id } });
    });
  }
}

function settleOnDeath(onDeath: HandleState | undefined, resolve: (value: unknown) => void, reject: (error: Error) => void): void {
  if (onDeath !== undefined) resolve(onDeath);
  else reject(new Error("the postmaster is gone: no background worker can be started"));
}
