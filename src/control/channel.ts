/**
 * The request channel: what a process outside the postmaster's event loop needs to ask it things, written
 * once for both transports (the control socket's frames, a worker's IPC channel). It numbers requests,
 * keeps the pending map, turns a lost postmaster into each request's documented outcome, and rebuilds a
 * failed request's error with the stack of the line that made the request (as postgres.js does), so an
 * error from the other process points at the caller's code, not at the reply handler.
 */
import { BackgroundWorkerStatus, BackgroundWorkerStatusError, makeError } from "../errors.js";
import { errorFromWire, type WireRequest } from "./protocol.js";

/**
 * What a request gets when the postmaster is gone instead of answering: handle queries and waits resolve
 * with the status PostmasterDied (as PostgreSQL's `GetBackgroundWorkerPid`), a terminate through a handle
 * rejects with that status, anything else rejects with a plain Error.
 */
export type OnLost = "postmaster-died" | "status-error" | "reject";

/** Every request without its id: the channel numbers them. */
export type Unnumbered<T> = T extends unknown ? Omit<T, "id"> : never;

export type OutgoingRequest = Unnumbered<WireRequest>;
export type NumberedRequest = WireRequest & { readonly id: number };

/** Anything requests can be put to: a channel, or the postmaster itself in its own process. */
export interface Requester {
  request(request: OutgoingRequest, onLost: OnLost): Promise<unknown>;
}

/** Why the channel no longer carries requests. */
export interface Lost {
  /** The postmaster went away (its death, or it closed the connection) rather than this side closing. */
  readonly postmasterGone: boolean;
  readonly message: string;
}

interface Pending {
  readonly resolve: (result: unknown) => void;
  readonly reject: (error: Error) => void;
  readonly onLost: OnLost;
  /** Holds the stack of the request's caller, captured when the request was made. */
  readonly caller: Error;
}

/** The one thing a transport does: write a numbered request. */
export type Send = (request: NumberedRequest) => void;

export class RequestChannel implements Requester {
  readonly #send: Send;
  readonly #pending = new Map<number, Pending>();
  readonly #onPendingChange: (count: number) => void;
  #nextId = 1;
  #lost: Lost | undefined;

  /** `onPendingChange` hears the number of unanswered requests (the socket stays referenced only while >0). */
  constructor(send: Send, onPendingChange: (count: number) => void = () => undefined) {
    this.#send = send;
    this.#onPendingChange = onPendingChange;
  }

  get lost(): Lost | undefined {
    return this.#lost;
  }

  request(request: OutgoingRequest, onLost: OnLost): Promise<unknown> {
    const caller = new Error("request");
    Error.captureStackTrace(caller, this.request);
    if (this.#lost !== undefined) return lostOutcome(this.#lost, onLost, caller);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, onLost, caller });
      this.#onPendingChange(this.#pending.size);
      try {
        this.#send({ ...request, id } as NumberedRequest);
      } catch (error) {
        this.#pending.delete(id);
        this.#onPendingChange(this.#pending.size);
        reject(withCallerStack(error instanceof Error ? error : new Error(String(error)), caller));
      }
    });
  }

  /** A reply arrived. False when it answers no pending request (a connection-level error, or a late one). */
  settle(id: unknown, reply: { readonly ok: true; readonly result: unknown } | { readonly ok: false; readonly error: unknown }): boolean {
    const pending = typeof id === "number" ? this.#pending.get(id) : undefined;
    if (pending === undefined) return false;
    this.#pending.delete(id as number);
    this.#onPendingChange(this.#pending.size);
    if (reply.ok) pending.resolve(reply.result);
    else pending.reject(withCallerStack(errorFromWire(reply.error), pending.caller));
    return true;
  }

  /** The postmaster can no longer be reached: every pending request gets its outcome, and so do later ones. */
  lose(lost: Lost): void {
    this.#lost ??= lost;
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    this.#onPendingChange(0);
    for (const request of pending) lostOutcome(this.#lost, request.onLost, request.caller).then(request.resolve, request.reject);
  }
}

/** What a request gets once the postmaster cannot be reached: handle operations learn that it died. */
export function lostOutcome(lost: Lost, onLost: OnLost, caller: Error): Promise<unknown> {
  if (lost.postmasterGone && onLost === "postmaster-died") return Promise.resolve({ status: BackgroundWorkerStatus.PostmasterDied });
  const error =
    lost.postmasterGone && onLost === "status-error"
      ? new BackgroundWorkerStatusError(BackgroundWorkerStatus.PostmasterDied, lost.message)
      : makeError(Error, "ERR_BGWORKER_CONNECTION_LOST", lost.message);
  return Promise.reject(withCallerStack(error, caller));
}

/** The error as made on the other side (or on loss), with the stack of the line that made the request. */
export function withCallerStack<E extends Error>(error: E, caller: Error): E {
  const frames = (caller.stack ?? "").split("\n").slice(1).join("\n");
  error.stack = `${error.name}: ${error.message}${frames === "" ? "" : `\n${frames}`}`;
  return error;
}
