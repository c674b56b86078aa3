/**
 * What a request asks of the postmaster, answered in the protocol's result shapes. The control socket and
 * the workers' IPC channel both carry these requests, so both are answered here.
 */
import { formatHandle } from "../launcher.js";
import type { ControlHandler } from "./handler.js";
import { handleStateToWire, type LaunchResult, type Request } from "./protocol.js";

/** Runs `request` on `handler` for the process `callerPid` (the notify pid that waits are judged by). */
export async function dispatchRequest(handler: ControlHandler, request: Request, callerPid: number): Promise<unknown> {
  switch (request.op) {
    case "status":
      return handler.status();
    case "launch": {
      const result: LaunchResult = { handle: formatHandle(handler.launch(request.definition)), notifyPid: request.definition.notifyPid };
      return result;
    }
    case "state":
      return handleStateToWire(handler.state(request.handle));
    case "waitForStartup":
      return handleStateToWire(await handler.waitForStartup(request.handle, callerPid));
    case "waitForShutdown":
      return handleStateToWire(await handler.waitForShutdown(request.handle, callerPid));
    case "terminate":
      handler.terminate(request.target);
      return null;
    case "stop":
      handler.stop(request.mode);
      return null;
  }
}
