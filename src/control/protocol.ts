/**
 * The control protocol, version 1 (docs/control-protocol.md): newline-delimited JSON over a Unix stream
 * socket. The client's first frame is a hello carrying its pid; every later frame is a request with an
 * `id` that its reply echoes, so requests may be pipelined and long waits answered out of order.
 *
 * This module is pure (no sockets): framing, validation of every request field, and the mapping of
 * errors to and from the wire, so that server and client share one definition and it is tested alone.
 */
import {
  BackgroundWorkerStatus,
  show,
  errorOfKnownClass,
  errorToWire,
  type WireError,
} from "../errors.js";
import type { ClusterStatus } from "../cluster/shell.js";
import { MAX_PID, type WorkerDefinition } from "../definition.js";
import { parseHandle, type HandleRef, type HandleState } from "../handle-format.js";
import { SHUTDOWN_MODES, type ShutdownMode } from "../status.js";
import { definitionFromWire } from "./wire-definition.js";

/** Bumped on any change to frames or ops; a server refuses a hello with another version. */
export const PROTOCOL_VERSION = 1;
/** Largest request frame, newline excluded. Requests are small; the cap bounds what a client can make us buffer. */
export const MAX_FRAME_BYTES = 64 * 1024;
/** Largest reply frame the client accepts: a status report grows with the slot count. */
export const MAX_REPLY_BYTES = 16 * 1024 * 1024;
/** Requests one connection may have unanswered at once (waits included). */
export const MAX_IN_FLIGHT = 1024;
const MAX_ID_LENGTH = 64;

/** A request's id: a non-negative safe integer or a short string, chosen by the client. */
export type RequestId = number | string;

export type Op = "status" | "launch" | "state" | "waitForStartup" | "waitForShutdown" | "terminate" | "restart" | "stop" | "reload" | "clusterStatus";
export const OPS: readonly Op[] = ["status", "launch", "state", "waitForStartup", "waitForShutdown", "terminate", "restart", "stop", "reload", "clusterStatus"];

/** The first frame of a connection, from the client. */
export interface HelloRequest {
  readonly v: number;
  readonly op: "hello";
  /** The client's pid: the notify pid of the workers it launches, and the pid its waits are checked against. */
  readonly pid: number;
  readonly id?: RequestId;
}

/** The hello reply's result. */
export interface HelloResult {
  readonly v: number;
  /** `HandleRef.postmaster` of the running postmaster. */
  readonly postmaster: string;
  /** The postmaster's pid. */
  readonly pid: number;
}

/** The requests of the protocol, with handles of type `Handle`. */
type RequestOf<Handle> =
  | { readonly id: RequestId; readonly op: "status" }
  | { readonly id: RequestId; readonly op: "launch"; readonly definition: WorkerDefinition }
  | { readonly id: RequestId; readonly op: "state" | "waitForStartup" | "waitForShutdown"; readonly handle: Handle }
  | { readonly id: RequestId; readonly op: "terminate"; readonly target: number | Handle }
  | { readonly id: RequestId; readonly op: "restart"; readonly target: RestartTargetOf<Handle> }
  | { readonly id: RequestId; readonly op: "stop"; readonly mode: ShutdownMode }
  | { readonly id: RequestId; readonly op: "reload" }
  | { readonly id: RequestId; readonly op: "clusterStatus" };

/** What `restart` names: a worker's pid, its handle, or every registered worker of a type. */
export type RestartTargetOf<Handle> = { readonly pid: number } | { readonly handle: Handle } | { readonly type: string };

/** The result of a `restart`: how many workers it matched (at least 1; none is an error). */
export interface RestartResult {
  readonly matched: number;
}

/** Requests as they are written on the wire (handles as strings). */
export type WireRequest = RequestOf<string>;

/** Requests after validation (handles parsed, definitions rebuilt). */
export type Request = RequestOf<HandleRef>;

/** The result of a `launch`. */
export interface LaunchResult {
  readonly handle: string;
  readonly notifyPid: number;
}

/** An error crosses the socket as `{name, message, status?}` (errors.ts), enough to re-create its class. */
export { errorToWire, type WireError };

export type Reply =
  | { readonly id: RequestId | null; readonly ok: true; readonly result: unknown }
  | { readonly id: RequestId | null; readonly ok: false; readonly error: WireError };

/** A frame that breaks the protocol (not JSON, unknown op, a field of the wrong type, too large...). */
export class ProtocolError extends Error {
  override readonly name = "ProtocolError";
  readonly code = "ERR_BGWORKER_PROTOCOL";
}

/** Outcome of parsing a frame: the request, or the error to reply with and the id to reply to (if any). */
export type Parsed<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly id: RequestId | null; readonly error: Error };

// ---------------------------------------------------------------------------------------------------------
// Framing

/** What the decoder found in the bytes pushed so far. */
export type FrameEvent = { readonly frame: string } | { readonly oversized: number } | { readonly invalidUtf8: true };

/**
 * Splits a byte stream into newline-terminated frames, never holding more than `maxBytes` of one frame:
 * once a frame is known to be too large it reports `oversized` and stops (the connection is then closed).
 */
export class FrameDecoder {
  readonly #maxBytes: number;
  readonly #utf8 = new TextDecoder("utf-8", { fatal: true });
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #stopped = false;

  constructor(maxBytes: number = MAX_FRAME_BYTES) {
    this.#maxBytes = maxBytes;
  }

  push(chunk: Buffer): FrameEvent[] {
    const events: FrameEvent[] = [];
    let start = 0;
    while (!this.#stopped && start <= chunk.length) {
      const newline = chunk.indexOf(0x0a, start);
      if (newline === -1) {
        const rest = chunk.subarray(start);
        if (rest.length > 0) {
          this.#pending.push(rest);
          this.#pendingBytes += rest.length;
        }
        if (this.#pendingBytes > this.#maxBytes) this.#stop(events, this.#pendingBytes);
        break;
      }
      const piece = chunk.subarray(start, newline);
      const size = this.#pendingBytes + piece.length;
      if (size > this.#maxBytes) {
        this.#stop(events, size);
        break;
      }
      const bytes = this.#pending.length === 0 ? piece : Buffer.concat([...this.#pending, piece]);
      this.#pending = [];
      this.#pendingBytes = 0;
      start = newline + 1;
      let text: string;
      try {
        text = this.#utf8.decode(bytes);
      } catch {
        events.push({ invalidUtf8: true });
        continue;
      }
      // Blank lines are allowed (and ignored) so that a human can type frames with a line-based tool.
      if (text.trim().length > 0) events.push({ frame: text });
    }
    return events;
  }

  #stop(events: FrameEvent[], size: number): void {
    this.#stopped = true;
    this.#pending = [];
    this.#pendingBytes = 0;
    events.push({ oversized: size });
  }
}

/** One frame: JSON and a newline. Frames never contain a raw newline, as JSON.stringify escapes them. */
export function encodeFrame(value: Reply | WireRequest | HelloRequest): string {
  return JSON.stringify(value) + "\n";
}

// ---------------------------------------------------------------------------------------------------------
// Validation

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Field values in messages are shown as everywhere else in the package (errors.ts `show`). */
const describe = show;

function isRequestId(value: unknown): value is RequestId {
  return (
    (typeof value === "number" && Number.isSafeInteger(value) && value >= 0) ||
    (typeof value === "string" && value.length > 0 && value.length <= MAX_ID_LENGTH)
  );
}

function isPid(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value > 0 && value <= MAX_PID;
}

function decodeJson(frame: string): Parsed<Record<string, unknown>> {
  let value: unknown;
  try {
    value = JSON.parse(frame);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return { ok: false, id: null, error: new ProtocolError(`frame is not valid JSON: ${reason}`) };
  }
  if (!isRecord(value)) return { ok: false, id: null, error: new ProtocolError(`frame must be a JSON object, got ${describe(value)}`) };
  return { ok: true, value };
}

/** Refuses fields an op does not define, so that a client written for another version learns at once. */
function unknownField(frame: Record<string, unknown>, allowed: readonly string[]): string | undefined {
  return Object.keys(frame).find((key) => !allowed.includes(key));
}

/** Validates the first frame of a connection. */
export function parseHello(frame: string): Parsed<HelloRequest> {
  const decoded = decodeJson(frame);
  if (!decoded.ok) return decoded;
  const value = decoded.value;
  const id = isRequestId(value.id) ? value.id : null;
  const fail = (message: string): Parsed<HelloRequest> => ({ ok: false, id, error: new ProtocolError(message) });
  if (value.op !== "hello") return fail(`the first frame must be a hello ({"v":${PROTOCOL_VERSION},"op":"hello","pid":PID}), got op ${describe(value.op)}`);
  if (value.id !== undefined && !isRequestId(value.id)) return fail(`hello: id ${describe(value.id)} must be a non-negative integer or a string of 1 to ${MAX_ID_LENGTH} characters`);
  if (value.v !== PROTOCOL_VERSION) return fail(`hello: protocol version ${describe(value.v)} is not supported (this postmaster speaks version ${PROTOCOL_VERSION})`);
  if (!isPid(value.pid)) return fail(`hello: pid ${describe(value.pid)} must be a process id (an integer from 1 to ${MAX_PID})`);
  const extra = unknownField(value, ["v", "op", "pid", "id"]);
  if (extra !== undefined) return fail(`hello: unknown field ${JSON.stringify(extra)}`);
  return { ok: true, value: { v: value.v, op: "hello", pid: value.pid, ...(id === null ? {} : { id }) } };
}

function parseHandleField(op: string, value: unknown): HandleRef {
  if (typeof value !== "string") throw new ProtocolError(`${op}: handle ${describe(value)} must be a string`);
  return parseHandle(value);
}

/** Validates a request frame (any frame after the hello). */
export function parseRequest(frame: string): Parsed<Request> {
  const decoded = decodeJson(frame);
  return decoded.ok ? requestFromValue(decoded.value) : decoded;
}

/**
 * Validates a request already decoded from JSON: the control socket's frames, and the same requests that
 * workers send over their IPC channel.
 */
export function requestFromValue(value: Record<string, unknown>): Parsed<Request> {
  if (!isRequestId(value.id)) {
    return {
      ok: false,
      id: null,
      error: new ProtocolError(
        value.id === undefined
          ? "request has no id"
          : `request id ${describe(value.id)} must be a non-negative integer or a string of 1 to ${MAX_ID_LENGTH} characters`,
      ),
    };
  }
  const id = value.id;
  const op = value.op;
  try {
    if (op === "hello") throw new ProtocolError("hello: this connection has already said hello");
    if (typeof op !== "string" || !(OPS as readonly string[]).includes(op)) {
      throw new ProtocolError(`unknown op ${describe(op)} (expected one of ${OPS.join(", ")})`);
    }
    return { ok: true, value: parseOp(id, op as Op, value) };
  } catch (error) {
    return { ok: false, id, error: error instanceof Error ? error : new ProtocolError(String(error)) };
  }
}

function parseOp(id: RequestId, op: Op, value: Record<string, unknown>): Request {
  const only = (fields: readonly string[]): void => {
    const extra = unknownField(value, ["id", "op", ...fields]);
    if (extra !== undefined) throw new ProtocolError(`${op}: unknown field ${JSON.stringify(extra)}`);
  };
  switch (op) {
    case "status":
    case "reload":
    case "clusterStatus":
      only([]);
      return { id, op };
    case "launch":
      only(["definition"]);
      return { id, op, definition: definitionFromWire(value.definition) };
    case "state":
    case "waitForStartup":
    case "waitForShutdown":
      only(["handle"]);
      return { id, op, handle: parseHandleField(op, value.handle) };
    case "terminate": {
      only(["target"]);
      const target = value.target;
      if (typeof target === "number") {
        if (!isPid(target)) throw new ProtocolError(`terminate: target ${describe(target)} must be a worker pid (an integer from 1 to ${MAX_PID}) or a handle`);
        return { id, op, target };
      }
      if (typeof target !== "string") throw new ProtocolError(`terminate: target ${describe(target)} must be a worker pid or a handle string`);
      return { id, op, target: parseHandle(target) };
    }
    case "restart": {
      only(["target"]);
      const target = value.target;
      const keys = isRecord(target) ? Object.keys(target) : [];
      const fail = (): never => {
        throw new ProtocolError(`restart: target ${describe(target)} must be {"pid": PID}, {"handle": HANDLE} or {"type": TYPE}`);
      };
      if (!isRecord(target) || keys.length !== 1) return fail();
      if (keys[0] === "pid") return isPid(target.pid) ? { id, op, target: { pid: target.pid } } : fail();
      if (keys[0] === "handle") return { id, op, target: { handle: parseHandleField(op, target.handle) } };
      if (keys[0] === "type" && typeof target.type === "string" && target.type.length > 0) return { id, op, target: { type: target.type } };
      return fail();
    }
    case "stop": {
      only(["mode"]);
      const mode = value.mode;
      if (typeof mode !== "string" || !(SHUTDOWN_MODES as readonly string[]).includes(mode)) {
        throw new ProtocolError(`stop: mode ${describe(mode)} must be one of ${SHUTDOWN_MODES.join(", ")}`);
      }
      return { id, op, mode: mode as ShutdownMode };
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Results and errors

const STATUSES = new Set<string>(Object.values(BackgroundWorkerStatus));

/** Reads a HandleState result; throws ProtocolError on a malformed one (a server bug, not user input). */
export function handleStateFromWire(value: unknown): HandleState {
  if (!isRecord(value) || typeof value.status !== "string" || !STATUSES.has(value.status)) {
    throw new ProtocolError(`reply: ${describe(value)} is not a worker state`);
  }
  const status = value.status as BackgroundWorkerStatus;
  if (value.pid === undefined || value.pid === null) return { status };
  if (!isPid(value.pid)) throw new ProtocolError(`reply: pid ${describe(value.pid)} is not a process id`);
  return { status, pid: value.pid };
}

/** A HandleState as a plain object, whatever object the handler returned. */
export function handleStateToWire(state: HandleState): HandleState {
  return state.pid === undefined ? { status: state.status } : { status: state.status, pid: state.pid };
}

export function launchResultFromWire(value: unknown): LaunchResult {
  if (!isRecord(value) || typeof value.handle !== "string" || typeof value.notifyPid !== "number") {
    throw new ProtocolError(`reply: ${describe(value)} is not a launch result`);
  }
  return { handle: value.handle, notifyPid: value.notifyPid };
}

/**
 * Reads a `clusterStatus` result (`bgworker status --cluster`), checked field by field as every other reply:
 * times are numbers (the server's clock, ms since the epoch), a generation a decimal string (a bigint), a
 * free lease's holder null.
 */
export function clusterStatusFromWire(value: unknown): ClusterStatus {
  const fail = (field: string, got: unknown): never => {
    throw new ProtocolError(field === "" ? `reply: ${describe(got)} is not a cluster status` : `reply: cluster status: ${field} ${describe(got)} is not valid`);
  };
  const text = (record: Record<string, unknown>, key: string, where: string): string =>
    typeof record[key] === "string" ? (record[key] as string) : fail(`${where}${key}`, record[key]);
  const time = (record: Record<string, unknown>, key: string, where: string): number =>
    typeof record[key] === "number" && Number.isFinite(record[key]) ? (record[key] as number) : fail(`${where}${key}`, record[key]);
  const list = (record: Record<string, unknown>, key: string): Record<string, unknown>[] => {
    const items = record[key];
    if (!Array.isArray(items)) return fail(key, items);
    return items.map((item, i) => (isRecord(item) ? item : fail(`${key}[${i}]`, item)));
  };
  if (!isRecord(value)) return fail("", value);
  const nodes = list(value, "nodes").map((node, i) => {
    const where = `nodes[${i}].`;
    const pid = node.pid;
    if (!isPid(pid)) return fail(`${where}pid`, pid);
    if (typeof node.live !== "boolean") return fail(`${where}live`, node.live);
    return { nodeId: text(node, "nodeId", where), host: text(node, "host", where), pid, heartbeatAt: time(node, "heartbeatAt", where), live: node.live };
  });
  const leases = list(value, "leases").map((lease, i) => {
    const where = `leases[${i}].`;
    const generation = text(lease, "generation", where);
    if (!/^(0|[1-9][0-9]*)$/.test(generation)) return fail(`${where}generation`, generation);
    const holder = lease.holder === null ? null : text(lease, "holder", where);
    return { worker: text(lease, "worker", where), holder, generation, expiresAt: time(lease, "expiresAt", where) };
  });
  return { cluster: text(value, "cluster", ""), nodeId: text(value, "nodeId", ""), serverNow: time(value, "serverNow", ""), nodes, leases };
}

export function helloResultFromWire(value: unknown): HelloResult {
  if (!isRecord(value) || typeof value.v !== "number" || typeof value.postmaster !== "string" || !isPid(value.pid)) {
    throw new ProtocolError(`reply: ${describe(value)} is not a hello result`);
  }
  return { v: value.v, postmaster: value.postmaster, pid: value.pid };
}

/** Re-creates the error a server sent, with its class where this side knows it. */
export function errorFromWire(value: unknown): Error {
  if (!isRecord(value) || typeof value.message !== "string" || typeof value.name !== "string") {
    return new ProtocolError(`reply: malformed error ${describe(value)}`);
  }
  const wire: WireError = {
    name: value.name,
    message: value.message,
    ...(typeof value.status === "string" ? { status: value.status } : {}),
    ...(typeof value.code === "string" ? { code: value.code } : {}),
  };
  if (wire.name === "ProtocolError") return new ProtocolError(wire.message);
  const error = errorOfKnownClass(wire);
  // Keep a foreign name visible (e.g. "AbortError") without inventing a class for it.
  if (error.constructor === Error && wire.name !== "Error" && wire.name.length <= 64) error.name = wire.name;
  return error;
}

/** Reads a reply frame (client side). */
export function parseReply(frame: string): Reply {
  let value: unknown;
  try {
    value = JSON.parse(frame);
  } catch (error) {
    throw new ProtocolError(`reply is not valid JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (!isRecord(value) || typeof value.ok !== "boolean" || !(value.id === null || isRequestId(value.id))) {
    throw new ProtocolError(`reply ${describe(value)} is not a reply frame`);
  }
  if (value.ok) return { id: value.id, ok: true, result: value.result ?? null };
  return { id: value.id, ok: false, error: errorToWire(errorFromWire(value.error)) };
}
