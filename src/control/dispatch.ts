/**
 * What a request asks of the postmaster, answered in the protocol's result shapes. The control socket and
 * the workers' IPC channel both carry these requests, and the postmaster's own launcher puts them too, so
 * every path is answered here, the admission check included.
 */
import { admitLaunch } from "../admission.js";
import { errorToWire, makeError, type WireError } from "../errors.js";
import { formatHandle } from "../handle-format.js";
import type { ControlHandler } from "./handler.js";
import { handleStateToWire, requestFromValue, type LaunchResult, type Request, type RequestId, type RestartResult } from "./protocol.js";

/** Runs `request` on `handler` for the process `callerPid` (the notify pid that launches and waits are judged by). */
export async function dispatchRequest(handler: ControlHandler, request: Request, callerPid: number): Promise<unknown> {
  switch (request.op) {
    case "status":
      return handler.status();
    case "launch": {
      admitLaunch({ definition: request.definition, callerPid });
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
    case "restart": {
      const result: RestartResult = { matched: handler.restart(request.target) };
      return result;
    }
    case "stop":
      handler.stop(request.mode);
      return null;
    case "reload":
      await handler.reload();
      return null;
    case "clusterStatus":
      if (handler.clusterStatus === undefined) {
        throw makeError(Error, "ERR_BGWORKER_POSTMASTER_STATE", "status --cluster: this postmaster is not in a cluster (start it with --cluster NAME)");
      }
      return handler.clusterStatus();
  }
}

export type Answer =
  | { readonly id: RequestId; readonly ok: true; readonly result: unknown }
  | { readonly id: RequestId; readonly ok: false; readonly error: WireError };

/**
 * Answers a request decoded from JSON (a worker's IPC message), validated exactly as a socket frame is.
 * Undefined when the request has no usable id, so no reply can be matched to it.
 */
export async function answerRequest(handler: ControlHandler, value: unknown, callerPid: number): Promise<Answer | { readonly id: null; readonly error: Error }> {
  const parsed = typeof value === "object" && value !== null && !Array.isArray(value) ? requestFromValue(value as Record<string, unknown>) : undefined;
  if (parsed === undefined) return { id: null, error: new TypeError("request is not an object") };
  if (!parsed.ok) return parsed.id === null ? { id: null, error: parsed.error } : { id: parsed.id, ok: false, error: errorToWire(parsed.error) };
  const { id } = parsed.value;
  try {
    return { id, ok: true, result: await dispatchRequest(handler, parsed.value, callerPid) };
  } catch (error) {
    return { id, ok: false, error: errorToWire(error) };
  }
}
