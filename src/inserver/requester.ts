/**
 * Dynamic launches and handles from inside an in-server worker (`loadDynamic()`, `DynamicBackgroundWorker`):
 * the worker's `Launcher` puts its requests here, and the backend answers them with PostgreSQL's own
 * `RegisterDynamicBackgroundWorker`, `GetBackgroundWorkerPid`, `WaitForBackgroundWorker*` and
 * `TerminateBackgroundWorker`. Handles are PostgreSQL's (slot and generation).
 */
import type { OnLost, OutgoingRequest, Requester } from "../control/channel.js";
import { BackgroundWorkerStatus, BackgroundWorkerStatusError, makeError, NoFreeWorkerSlotError } from "../errors.js";
import { notInServerError } from "./mode.js";
import { DatabaseError, type BackendTransport } from "./transport.js";
import { FrameWriter } from "./wire.js";

const STATUSES = [
  BackgroundWorkerStatus.Started,
  BackgroundWorkerStatus.NotYetStarted,
  BackgroundWorkerStatus.Stopped,
  BackgroundWorkerStatus.PostmasterDied,
  BackgroundWorkerStatus.Untracked,
] as const;

const HANDLE_OPS = { state: 0, waitForStartup: 1, waitForShutdown: 2 } as const;

export class BackendRequester implements Requester {
  readonly #transport: BackendTransport;

  constructor(transport: BackendTransport) {
    this.#transport = transport;
  }

  async request(request: OutgoingRequest, onLost: OnLost): Promise<unknown> {
    if (this.#transport.gone) return lost(onLost);
    try {
      return await this.#request(request);
    } catch (error) {
      if (this.#transport.gone) return lost(onLost);
      if (error instanceof DatabaseError && error.code === "53400") throw new NoFreeWorkerSlotError(error.message);
      if (error instanceof DatabaseError) throw makeError(Error, "ERR_BGWORKER_FAILED", error.message);
      throw error;
    }
  }

  async #request(request: OutgoingRequest): Promise<unknown> {
    switch (request.op) {
      case "launch": {
        const d = request.definition;
        if (d.shmem) throw notInServerError(`loadDynamic: background worker "${d.name}" has enableShmemAccess()`, "shmem");
        if (d.scope === "cluster") throw notInServerError(`loadDynamic: background worker "${d.name}" has setScope("cluster")`, "cluster");
        const reply = await this.#transport.request(
          new FrameWriter("D")
            .str(d.name)
            .str(d.type)
            .str(d.library)
            .str(d.function)
            .i32(d.restartTimeMs ?? -1)
            .u8((d.spi ? 1 : 0) | (d.shmem ? 2 : 0))
            .u32(d.notifyPid)
            .str(JSON.stringify(d)),
        );
        return { handle: reply.str(), notifyPid: reply.u32() };
      }
      case "state":
      case "waitForStartup":
      case "waitForShutdown": {
        const reply = await this.#transport.request(new FrameWriter("H").u8(HANDLE_OPS[request.op]).str(request.handle));
        const status = STATUSES[reply.u8()] ?? BackgroundWorkerStatus.Stopped;
        const pid = reply.u32();
        return status === BackgroundWorkerStatus.Started ? { status, pid } : { status };
      }
      case "terminate": {
        await this.#transport.request(new FrameWriter("H").u8(3).str(String(request.target)));
        return undefined;
      }
      default:
        throw notInServerError(request.op, "control-socket");
    }
  }
}

function lost(onLost: OnLost): unknown {
  const message = "the server is stopping: no background worker can be started";
  if (onLost === "postmaster-died") return { status: BackgroundWorkerStatus.PostmasterDied };
  if (onLost === "status-error") throw new BackgroundWorkerStatusError(BackgroundWorkerStatus.PostmasterDied, message);
  throw makeError(Error, "ERR_BGWORKER_FAILED", message);
}
