/**
 * One cluster-scoped worker's lease, as seen by one node (SPEC §10): every decision about acquiring,
 * renewing, losing and releasing it, and about starting and stopping the worker it guards, with no I/O.
 *
 * Written in the style of the postmaster's machine (postmaster/machine.ts): every input is a `LeaseEvent`,
 * plain data; every answer is a list of `LeaseAction`s; the shell runs the queries, the timers and the
 * signals and feeds back what came of them as later events, one at a time. Events can be logged and
 * replayed.
 *
 * Clocks. The machine reads no clock. Two kinds of time arrive in events and are never compared:
 * - `at`: this host's monotonic clock (ms), for durations measured here (timers, "how long since the last
 *   good renewal was sent");
 * - `serverNow`, `expiresAt`: the database server's clock (ms since the epoch) from query results. Expiry is
 *   the server's judgement (a query decides who holds the lease); the machine only takes durations from
 *   them (`expiresAt - serverNow`: how long the server will keep the lease) and lays those out on `at`.
 *
 * Safety (no two holders). A holder measures its deadlines from when it SENT its last renewal that
 * succeeded (timings.ts says why that is always early enough): SIGTERM at `termMs`, SIGKILL at `stopMs`,
 * both before the lease expires on the server; every event re-checks them first, so a process that wakes
 * from a freeze kills its worker before it does anything else. Another node takes the lease only when the
 * database says so (expired by the server's clock, or the holder's session gone, lease-sql.ts), and the
 * database terminates the old holder's sessions before it grants generation G+1.
 */
import { makeError, type CodedError } from "../errors.js";
import { checkTimings, type LeaseTimings } from "./timings.js";

export type LeaseTimerKey =
  /** Not holding: try to acquire (a poll; a holder's death is seen this way, SPEC's killed-postmaster bound). */
  | "poll"
  /** Holding: send the next renewal. */
  | "renew"
  /** Holding: no renewal has succeeded for `termMs`: give the lease up, SIGTERM. */
  | "term"
  /** The worker must be gone: SIGKILL. */
  | "kill";

/** The queries of lease-sql.ts, with what they name. */
export type LeaseQuery =
  | { readonly query: "acquire" }
  /** Scoped to the holder and its generation: a stale holder's renewal never extends another's lease. */
  | { readonly query: "renew"; readonly generation: bigint }
  /** Also NOTIFYs the other nodes, so that one takes the lease at once rather than at its next poll. */
  | { readonly query: "release"; readonly generation: bigint };

export type LeaseLogEvent =
  | { readonly event: "lease-acquired"; readonly worker: string; readonly generation: bigint }
  /** SPEC §10: the log says "leadership lost". */
  | { readonly event: "leadership-lost"; readonly worker: string; readonly generation: bigint; readonly reason: string }
  | { readonly event: "lease-renewal-failed"; readonly worker: string; readonly generation: bigint; readonly reason: string }
  | { readonly event: "lease-released"; readonly worker: string; readonly generation: bigint }
  | { readonly event: "lease-release-failed"; readonly worker: string; readonly generation: bigint; readonly reason: string };

export type LeaseAction =
  /** Run a query on the node's cluster session; its outcome comes back as an event. Cancel it after `timeoutMs`. */
  | ({ readonly type: "query"; readonly timeoutMs: number } & LeaseQuery)
  /** Start the worker; `generation` is its fencing token (`BackgroundWorker.getFencingToken()`). */
  | { readonly type: "startWorker"; readonly generation: bigint }
  /**
   * Signal the worker; one waiting for its restart (no process) is unregistered instead, and its
   * `worker-exited` (final) fed back at once. A worker this machine stopped is never restarted by the
   * postmaster's rules: the lease decides when it runs again.
   */
  | { readonly type: "stopWorker"; readonly signal: "SIGTERM" | "SIGKILL" }
  | { readonly type: "setTimer"; readonly key: LeaseTimerKey; readonly delayMs: number }
  | { readonly type: "clearTimer"; readonly key: LeaseTimerKey }
  | { readonly type: "log"; readonly event: LeaseLogEvent }
  /** The node cannot take part in the cluster (a transaction pooler): the shell reports it and stops. */
  | { readonly type: "fail"; readonly error: CodedError }
  /** After `shutdown`: the worker is gone and the lease released (or lost); nothing more will come. */
  | { readonly type: "done" };

type QueryName = LeaseQuery["query"];

export type LeaseEvent =
  /** The node's cluster session is open (again): `backendPid` is its server process. Contending begins. */
  | { readonly kind: "session-opened"; readonly at: number; readonly backendPid: number }
  /** The cluster session ended (connection lost, or terminated by the server): its advisory locks are gone. */
  | { readonly kind: "session-lost"; readonly at: number; readonly reason: string }
  | { readonly kind: "timer"; readonly at: number; readonly key: LeaseTimerKey }
  /** `acquire` granted the lease: generation, and the server's clock. `backendPid` is who ran the query. */
  | { readonly kind: "acquired"; readonly at: number; readonly generation: bigint; readonly serverNow: number; readonly expiresAt: number; readonly backendPid: number }
  /** `acquire` found the lease held by a live holder (by the server's clock). */
  | { readonly kind: "busy"; readonly at: number; readonly holder: string; readonly generation: bigint; readonly serverNow: number; readonly expiresAt: number }
  | { readonly kind: "renewed"; readonly at: number; readonly generation: bigint; readonly serverNow: number; readonly expiresAt: number; readonly backendPid: number }
  /** `renew` matched no row: the lease is no longer this node's generation (expired, or taken over). */
  | { readonly kind: "renew-rejected"; readonly at: number; readonly generation: bigint }
  | { readonly kind: "released"; readonly at: number; readonly generation: bigint }
  /** A query failed or timed out (the database unreachable, a statement cancelled...). */
  | { readonly kind: "query-failed"; readonly at: number; readonly query: QueryName; readonly reason: string }
  /** A NOTIFY from a node that released the lease. */
  | { readonly kind: "notified"; readonly at: number; readonly node: string; readonly generation: bigint }
  /** The worker started by `startWorker` has a process. */
  | { readonly kind: "worker-started"; readonly at: number; readonly pid: number }
  /**
   * The worker's process exited. `final`: the postmaster will not start it again (exit 0, or no restart
   * time); otherwise it restarts it under the same lease and generation, as PostgreSQL restarts a worker.
   */
  | { readonly kind: "worker-exited"; readonly at: number; readonly pid: number; readonly final: boolean }
  | { readonly kind: "shutdown"; readonly at: number; readonly mode: "smart" | "fast" | "immediate" };

/** What a holder knows of its lease. Times `*At` are on this host's monotonic clock. */
interface Holding {
  readonly generation: bigint;
  /** SIGTERM once `at` reaches this with no newer successful renewal. */
  readonly termAt: number;
  /** SIGKILL once `at` reaches this. */
  readonly killAt: number;
  /** The lease's expiry by the server's clock, for status. */
  readonly expiresAt: number;
}

/**
 * The lease, one tagged union replaced whole on each transition:
 * - `idle`: no cluster session (before the first, or between a lost one and the next);
 * - `waiting`: not held; polls every `renewMs` and acquires at once on a release's NOTIFY;
 * - `acquiring`: an `acquire` is in flight (`wakeAgain`: a NOTIFY came meanwhile, try again at once if busy);
 * - `held`, `renewing`: this node holds generation G; `renewing` has a renewal in flight, sent at `sentAt`;
 * - `lost`: given up (deadline passed, rejected, session gone); the worker is being stopped; contends again
 *   once it is gone;
 * - `releasing`: given up on purpose (shutdown, or the worker is done for good): renewals go on while the
 *   worker stops, then `release` runs;
 * - `finished`: released because the worker is done for good; this node contends no more;
 * - `stopped`: after shutdown.
 */
export type LeaseState =
  | { readonly state: "idle" }
  | { readonly state: "waiting" }
  | { readonly state: "acquiring"; readonly sentAt: number; readonly wakeAgain: boolean }
  | ({ readonly state: "held" } & Holding)
  | ({ readonly state: "renewing"; readonly sentAt: number } & Holding)
  | { readonly state: "lost"; readonly generation: bigint; readonly killAt: number }
  | ({ readonly state: "releasing"; readonly why: "shutdown" | "finished"; readonly inFlight: null | "renew" | "release"; readonly sentAt: number } & Holding)
  | { readonly state: "finished" }
  | { readonly state: "stopped" };

/** The worker this lease guards, as far as this node knows: none, or started (pid once it has one). */
interface WorkerRun {
  readonly pid: number | null;
  readonly sent: null | "SIGTERM" | "SIGKILL";
}

export interface LeaseMachineOptions {
  /** The cluster-scoped worker's name: the lease's key within the cluster. */
  readonly worker: string;
  /** This node's id (SPEC §10: default HOSTNAME-PID), to tell its own NOTIFYs apart. */
  readonly nodeId: string;
  readonly timings: LeaseTimings;
}

export class LeaseMachine {
  readonly worker: string;
  readonly nodeId: string;
  readonly timings: LeaseTimings;
  #state: LeaseState = { state: "idle" };
  #worker: WorkerRun | null = null;
  /** The cluster session's server process, to check that every query runs on it (no transaction pooler). */
  #backendPid: number | null = null;
  #shutdown: "smart" | "fast" | "immediate" | null = null;
  /** While releasing: SIGKILL by the shutdown timeout, if it comes before the lease's own kill deadline. */
  #stopBy: number | null = null;
  /** The worker is done for good here (exit 0, or no restart time): this node contends no more. */
  #retired = false;
  #actions: LeaseAction[] = [];
  /** The last holder another node was seen to be, for status. */
  #seenHolder: { readonly holder: string; readonly generation: bigint; readonly expiresAt: number } | null = null;

  constructor(options: LeaseMachineOptions) {
    checkTimings(options.timings);
    this.worker = options.worker;
    this.nodeId = options.nodeId;
    this.timings = options.timings;
  }

  /** The one way in: applies `event`, then re-checks the holder's deadlines against its `at`. */
  handle(event: LeaseEvent): LeaseAction[] {
    this.#apply(event);
    this.#checkDeadlines(event.at);
    if (event.kind === "timer" && (event.key === "term" || event.key === "kill")) this.#rearmIfEarly(event.key, event.at);
    const actions = this.#actions;
    this.#actions = [];
    return actions;
  }

  get state(): LeaseState {
    return this.#state;
  }

  /** The generation this node holds, or null. */
  get generation(): bigint | null {
    const s = this.#state;
    return s.state === "held" || s.state === "renewing" || s.state === "releasing" ? s.generation : null;
  }

  /** Whether the worker may be running here (started, and not yet seen to exit). */
  get workerAlive(): boolean {
    return this.#worker !== null;
  }

  get seenHolder(): { readonly holder: string; readonly generation: bigint; readonly expiresAt: number } | null {
    return this.#seenHolder;
  }

  // ----- events -------------------------------------------------------------------------------------

  #apply(e: LeaseEvent): void {
    switch (e.kind) {
      case "session-opened":
        return this.#sessionOpened(e.at, e.backendPid);
      case "session-lost":
        return this.#sessionLost(e.at, e.reason);
      case "timer":
        return this.#timer(e.at, e.key);
      case "acquired":
        return this.#acquired(e);
      case "busy":
        return this.#busy(e);
      case "renewed":
        return this.#renewed(e);
      case "renew-rejected":
        return this.#renewRejected(e.at, e.generation);
      case "released":
        return this.#released(e.generation);
      case "query-failed":
        return this.#queryFailed(e.at, e.query, e.reason);
      case "notified":
        return this.#notified(e.at, e.node);
      case "worker-started":
        if (this.#worker !== null) this.#worker = { ...this.#worker, pid: e.pid };
        return;
      case "worker-exited":
        return this.#workerExited(e.at, e.final);
      case "shutdown":
        return this.#shutdownRequested(e.at, e.mode);
    }
  }

  #sessionOpened(at: number, backendPid: number): void {
    this.#backendPid = backendPid;
    if (this.#state.state === "idle" && this.#shutdown === null) this.#acquire(at);
  }

  /**
   * The session's advisory lock went with it, and that lock is what keeps the other nodes out before expiry
   * (lease-sql.ts): one of them may take the lease at its next poll. The worker is killed now, not asked.
   */
  #sessionLost(at: number, reason: string): void {
    this.#backendPid = null;
    const s = this.#state;
    if (s.state === "held" || s.state === "renewing" || s.state === "releasing") {
      this.#lose(at, `the cluster session was lost (${reason})`, true);
    }
    const after = this.#state.state;
    if (after === "waiting" || after === "acquiring") {
      this.#clear("poll");
      this.#state = { state: "idle" };
    }
    this.#finishShutdownIfDone();
  }

  #timer(at: number, key: LeaseTimerKey): void {
    const s = this.#state;
    switch (key) {
      case "poll":
        if (s.state === "waiting") this.#acquire(at);
        return;
      case "renew":
        if (s.state === "held" || (s.state === "releasing" && s.inFlight === null && this.#worker !== null)) {
          this.#setTimer("renew", this.timings.renewMs);
          this.#query({ query: "renew", generation: s.generation }, this.timings.renewMs);
          this.#state = s.state === "held" ? { ...s, state: "renewing", sentAt: at } : { ...s, inFlight: "renew", sentAt: at };
        } else if (s.state === "renewing" || s.state === "releasing") {
          // One query at a time: the one in flight times out at renewMs and the next tick sends another.
          this.#setTimer("renew", this.timings.renewMs);
        }
        return;
      case "term":
      case "kill":
        // #checkDeadlines, which runs after every event, does the work; a stale timer finds nothing due.
        return;
    }
  }

  #acquired(e: Extract<LeaseEvent, { kind: "acquired" }>): void {
    const s = this.#state;
    if (s.state !== "acquiring") return;
    if (!this.#sameSession(e.at, e.backendPid)) return;
    const holding = this.#holding(e.generation, s.sentAt, e.serverNow, e.expiresAt);
    this.#state = { state: "held", ...holding };
    this.#seenHolder = null;
    this.#log({ event: "lease-acquired", worker: this.worker, generation: e.generation });
    this.#setTimer("renew", this.timings.renewMs);
    this.#armDeadlines(e.at, holding);
    if (this.#shutdown !== null) {
      // Shut down while the acquire was in flight: give it back at once, without ever starting the worker.
      this.#state = { state: "releasing", why: "shutdown", inFlight: null, sentAt: e.at, ...holding };
      this.#advanceRelease(e.at);
      return;
    }
    this.#worker = { pid: null, sent: null };
    this.#emit({ type: "startWorker", generation: e.generation });
  }

  #busy(e: Extract<LeaseEvent, { kind: "busy" }>): void {
    const s = this.#state;
    if (s.state !== "acquiring") return;
    this.#seenHolder = { holder: e.holder, generation: e.generation, expiresAt: e.expiresAt };
    this.#state = { state: "waiting" };
    if (this.#shutdown !== null) return this.#finishShutdownIfDone();
    if (s.wakeAgain) return this.#acquire(e.at);
    // The server says how long the lease has left: poll just after that if it comes before the next period,
    // so a frozen or cut-off holder's lease is taken as soon as the server lets it go.
    const left = e.expiresAt - e.serverNow;
    this.#setTimer("poll", left > 0 && left < this.timings.renewMs ? left + 1 : this.timings.renewMs);
  }

  #renewed(e: Extract<LeaseEvent, { kind: "renewed" }>): void {
    const s = this.#state;
    const inFlight = s.state === "renewing" || (s.state === "releasing" && s.inFlight === "renew");
    // A late answer to an earlier generation's renewal is no news about this one.
    if (!inFlight || s.generation !== e.generation) return;
    if (!this.#sameSession(e.at, e.backendPid)) return;
    const holding = this.#holding(e.generation, s.sentAt, e.serverNow, e.expiresAt);
    if (s.state === "renewing") this.#state = { state: "held", ...holding };
    else this.#state = { ...s, ...holding, inFlight: null };
    this.#armDeadlines(e.at, holding);
    if (this.#state.state === "releasing") {
      // A worker told to stop keeps its SIGKILL at the earlier of the shutdown timeout and the new deadline.
      if (this.#worker?.sent === "SIGTERM") this.#setTimer("kill", Math.max(0, Math.min(holding.killAt, this.#stopBy ?? Infinity) - e.at));
      this.#advanceRelease(e.at);
    }
  }

  #renewRejected(at: number, generation: bigint): void {
    const s = this.#state;
    const inFlight = s.state === "renewing" || (s.state === "releasing" && s.inFlight === "renew");
    if (!inFlight || s.generation !== generation) return;
    // The database says generation G is no longer this node's: G+1 may be running elsewhere already.
    this.#lose(at, "the lease expired or was taken over", true);
  }

  #released(generation: bigint): void {
    const s = this.#state;
    if (s.state !== "releasing" || s.inFlight !== "release" || s.generation !== generation) return;
    this.#log({ event: "lease-released", worker: this.worker, generation });
    this.#afterRelease(s.why);
  }

  #queryFailed(at: number, query: QueryName, reason: string): void {
    const s = this.#state;
    if (query === "acquire" && s.state === "acquiring") {
      this.#state = { state: "waiting" };
      if (this.#shutdown === null) this.#setTimer("poll", this.timings.renewMs);
      else this.#finishShutdownIfDone();
    } else if (query === "renew" && s.state === "renewing") {
      // The deadlines stand: the next tick tries again, and `term` gives the lease up if none succeeds.
      this.#log({ event: "lease-renewal-failed", worker: this.worker, generation: s.generation, reason });
      this.#state = { ...s, state: "held" };
    } else if (query === "renew" && s.state === "releasing" && s.inFlight === "renew") {
      this.#log({ event: "lease-renewal-failed", worker: this.worker, generation: s.generation, reason });
      this.#state = { ...s, inFlight: null };
      this.#advanceRelease(at);
    } else if (query === "release" && s.state === "releasing" && s.inFlight === "release") {
      // Nothing more to do than let it expire on the server: the other nodes take it over then.
      this.#log({ event: "lease-release-failed", worker: this.worker, generation: s.generation, reason });
      this.#afterRelease(s.why);
    }
  }

  /** A release elsewhere: take the lease now rather than at the next poll (SPEC's graceful handover bound). */
  #notified(at: number, node: string): void {
    if (node === this.nodeId || this.#shutdown !== null) return;
    const s = this.#state;
    if (s.state === "waiting") this.#acquire(at);
    // The release may have committed after the acquire in flight read the lease: if it says busy, ask again.
    else if (s.state === "acquiring") this.#state = { ...s, wakeAgain: true };
  }

  #workerExited(at: number, final: boolean): void {
    const run = this.#worker;
    if (run === null) return;
    const s = this.#state;
    // A worker this node stopped is gone for good under this lease; one that exits by itself is the
    // postmaster's to restart, under the same generation, while the lease is held.
    if (!final && run.sent === null && (s.state === "held" || s.state === "renewing")) {
      this.#worker = { pid: null, sent: null };
      return;
    }
    this.#worker = null;
    this.#clear("kill");
    if (s.state === "lost") {
      this.#afterLoss();
    } else if (s.state === "held" || s.state === "renewing") {
      this.#retired = true;
      // Done for good (exit 0, or no restart time): hand the lease to the nodes that still run it.
      this.#state = { state: "releasing", why: "finished", inFlight: s.state === "renewing" ? "renew" : null, sentAt: s.state === "renewing" ? s.sentAt : at, ...pickHolding(s) };
      this.#advanceRelease(at);
    } else if (s.state === "releasing") {
      this.#advanceRelease(at);
    }
  }

  #shutdownRequested(at: number, mode: "smart" | "fast" | "immediate"): void {
    const previous = this.#shutdown;
    this.#shutdown = previous === "immediate" || (previous === "fast" && mode === "smart") ? previous : mode;
    const s = this.#state;
    switch (s.state) {
      case "idle":
      case "waiting":
      case "finished":
        this.#clear("poll");
        this.#state = { state: "stopped" };
        this.#emit({ type: "done" });
        return;
      case "acquiring":
        return; // its answer decides: busy stops, acquired releases at once
      case "held":
      case "renewing":
        // Even a smart shutdown stops a cluster worker at once: another node is ready to run it, and the
        // lease is handed over as soon as it is gone (release and NOTIFY).
        this.#state = { state: "releasing", why: "shutdown", inFlight: s.state === "renewing" ? "renew" : null, sentAt: s.state === "renewing" ? s.sentAt : at, ...pickHolding(s) };
        this.#stopWorker(at, mode === "immediate" ? "SIGKILL" : "SIGTERM", s.killAt);
        this.#advanceRelease(at);
        return;
      case "releasing":
        if (mode === "immediate" && this.#worker !== null && this.#worker.sent !== "SIGKILL") this.#stopWorker(at, "SIGKILL", s.killAt);
        else if (s.why === "finished") this.#state = { ...s, why: "shutdown" };
        return;
      case "lost":
        if (mode === "immediate" && this.#worker !== null && this.#worker.sent !== "SIGKILL") this.#stopWorker(at, "SIGKILL", s.killAt);
        this.#finishShutdownIfDone();
        return;
      case "stopped":
        return;
    }
  }

  // ----- transitions --------------------------------------------------------------------------------

  #acquire(at: number): void {
    this.#clear("poll");
    if (this.#backendPid === null) {
      this.#state = { state: "idle" };
      return;
    }
    this.#state = { state: "acquiring", sentAt: at, wakeAgain: false };
    // The acquire may wait for the old holder's sessions to be terminated (lease-sql.ts): give it the lease's time.
    this.#query({ query: "acquire" }, this.timings.leaseMs);
  }

  /**
   * Lays the server's remaining lease out on this host's clock from the send time: the server holds the
   * lease until `sentAt + (expiresAt - serverNow)` at the earliest, as seen from here.
   */
  #holding(generation: bigint, sentAt: number, serverNow: number, expiresAt: number): Holding {
    const left = Math.min(expiresAt - serverNow, this.timings.leaseMs);
    const { leaseMs, termMs, stopMs } = this.timings;
    return { generation, expiresAt, termAt: sentAt + left - (leaseMs - termMs), killAt: sentAt + left - (leaseMs - stopMs) };
  }

  #armDeadlines(at: number, holding: Holding): void {
    this.#setTimer("term", Math.max(0, holding.termAt - at));
  }

  /**
   * Gives the lease up: no more renewals, the worker is stopped. `killNow`: the lease may be granted
   * elsewhere at any moment (the database said so, or the session and its lock are gone), so there is no
   * grace. Otherwise SIGTERM now and SIGKILL by the lease's kill deadline.
   */
  #lose(at: number, reason: string, killNow: boolean): void {
    const s = this.#state;
    if (s.state !== "held" && s.state !== "renewing" && s.state !== "releasing") return;
    this.#clear("renew");
    this.#clear("term");
    this.#log({ event: "leadership-lost", worker: this.worker, generation: s.generation, reason });
    if (s.state === "releasing" && s.why === "finished") this.#retired = true;
    const killAt = killNow ? at : Math.min(s.killAt, this.#stopBy ?? Infinity);
    this.#stopBy = null;
    this.#state = { state: "lost", generation: s.generation, killAt };
    if (this.#worker === null) return this.#afterLoss();
    if (killNow) this.#stopWorker(at, "SIGKILL", killAt);
    else this.#stopWorker(at, "SIGTERM", killAt);
  }

  /**
   * Signals the worker. After SIGTERM, SIGKILL follows at the earlier of the shutdown timeout (SPEC §10:
   * "SIGKILL after the shutdown timeout") and the lease's kill deadline: past that deadline another node
   * may hold the lease, so the shutdown timeout can shorten the wait but never lengthen it.
   */
  #stopWorker(at: number, signal: "SIGTERM" | "SIGKILL", killAt: number): void {
    const run = this.#worker;
    if (run === null || run.sent === "SIGKILL" || run.sent === signal) return;
    this.#worker = { ...run, sent: signal };
    this.#emit({ type: "stopWorker", signal });
    if (signal === "SIGTERM") this.#setTimer("kill", Math.max(0, Math.min(killAt - at, this.timings.shutdownTimeoutMs)));
    else this.#clear("kill");
    const s = this.#state;
    // The shutdown timeout may come first: remember it as the deadline, so #checkDeadlines sends SIGKILL then.
    const due = Math.min(killAt, at + this.timings.shutdownTimeoutMs);
    if (signal === "SIGTERM" && s.state === "lost") this.#state = { ...s, killAt: due };
    else if (signal === "SIGTERM" && s.state === "releasing") this.#stopBy = due;
  }

  /** A graceful give-up goes on: renewals while the worker stops, then the release query. */
  #advanceRelease(at: number): void {
    const s = this.#state;
    if (s.state !== "releasing" || s.inFlight !== null) return;
    if (this.#worker !== null) {
      if (this.#worker.sent === null) this.#stopWorker(at, this.#shutdown === "immediate" ? "SIGKILL" : "SIGTERM", s.killAt);
      return;
    }
    this.#clear("renew");
    this.#clear("term");
    this.#clear("kill");
    this.#stopBy = null;
    this.#state = { ...s, inFlight: "release", sentAt: at };
    this.#query({ query: "release", generation: s.generation }, this.timings.renewMs);
  }

  /** The lost lease's worker is gone: contend again, unless shutting down, retired, or without a session. */
  #afterLoss(): void {
    if (this.#shutdown !== null) {
      this.#state = { state: "waiting" };
      this.#finishShutdownIfDone();
    } else if (this.#retired) {
      this.#state = { state: "finished" };
    } else if (this.#backendPid === null) {
      this.#state = { state: "idle" };
    } else {
      this.#state = { state: "waiting" };
      this.#setTimer("poll", this.timings.renewMs);
    }
  }

  #afterRelease(why: "shutdown" | "finished"): void {
    if (why === "finished" && this.#shutdown === null) {
      this.#state = { state: "finished" };
      return;
    }
    this.#state = { state: "stopped" };
    this.#emit({ type: "done" });
  }

  #finishShutdownIfDone(): void {
    if (this.#shutdown === null || this.#worker !== null) return;
    const s = this.#state.state;
    if (s === "waiting" || s === "idle" || s === "lost") {
      this.#clear("poll");
      this.#state = { state: "stopped" };
      this.#emit({ type: "done" });
    }
  }

  /**
   * The holder's deadlines, checked after every event with its `at`: a late timer, a freeze, or an event
   * loop that stalled all end here, and the worker is stopped before anything else happens.
   */
  #checkDeadlines(at: number): void {
    const s = this.#state;
    if (s.state === "held" || s.state === "renewing" || s.state === "releasing") {
      if (at >= s.killAt) this.#lose(at, `no renewal succeeded within ${this.timings.stopMs} ms`, true);
      else if (at >= s.termAt) this.#lose(at, `no renewal succeeded within ${this.timings.termMs} ms`, false);
      else if (s.state === "releasing" && this.#stopBy !== null && at >= this.#stopBy) this.#stopWorker(at, "SIGKILL", at);
    } else if (s.state === "lost" && at >= s.killAt) {
      this.#stopWorker(at, "SIGKILL", at);
    }
  }

  /**
   * A deadline's timer that fired before its deadline (timers may fire up to a millisecond early by the
   * monotonic clock the events carry) is set again for what remains: in the `lost` state no other event may
   * come, and the SIGKILL must not wait for one.
   */
  #rearmIfEarly(key: "term" | "kill", at: number): void {
    const s = this.#state;
    if (key === "term") {
      if ((s.state === "held" || s.state === "renewing" || s.state === "releasing") && at < s.termAt) this.#setTimer("term", s.termAt - at);
      return;
    }
    const run = this.#worker;
    if (run === null || run.sent !== "SIGTERM") return;
    const due = s.state === "lost" ? s.killAt : s.state === "releasing" ? Math.min(s.killAt, this.#stopBy ?? Infinity) : null;
    if (due !== null && at < due) this.#setTimer("kill", due - at);
  }

  /**
   * Every lease query must run on the node's own cluster session, whose advisory lock is part of the lease:
   * a different server process means a transaction-mode pooler hands statements to whichever server
   * connection is free (SPEC §10: detected and refused).
   */
  #sameSession(at: number, backendPid: number): boolean {
    if (this.#backendPid === null || this.#backendPid === backendPid) return true;
    const error = makeError(
      Error,
      "ERR_BGWORKER_CLUSTER_POOLER",
      `cluster mode: lease queries ran on server process ${backendPid}, not on the cluster session's ${this.#backendPid}: ` +
        `a transaction-mode connection pooler breaks session locks; connect to PostgreSQL directly or through a session-mode pool`,
    );
    this.#emit({ type: "fail", error });
    const s = this.#state;
    if (s.state === "acquiring") this.#state = { state: "idle" };
    else this.#lose(at, "the lease queries did not run on the cluster session", true);
    this.#backendPid = null;
    return false;
  }

  // ----- output -------------------------------------------------------------------------------------

  #query(query: LeaseQuery, timeoutMs: number): void {
    this.#emit({ type: "query", timeoutMs, ...query });
  }

  #setTimer(key: LeaseTimerKey, delayMs: number): void {
    this.#emit({ type: "setTimer", key, delayMs });
  }

  #clear(key: LeaseTimerKey): void {
    this.#emit({ type: "clearTimer", key });
  }

  #log(event: LeaseLogEvent): void {
    this.#emit({ type: "log", event });
  }

  #emit(action: LeaseAction): void {
    this.#actions.push(action);
  }
}

function pickHolding(h: Holding): Holding {
  return { generation: h.generation, termAt: h.termAt, killAt: h.killAt, expiresAt: h.expiresAt };
}
