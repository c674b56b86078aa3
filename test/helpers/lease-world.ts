/**
 * A deterministic world for lease machines, without processes or a database: nodes that carry out their
 * machine's actions, a lease row that answers the queries as lease-sql.ts does (by the server's clock), a
 * network with latency that can be cut, and worker processes that exit when signalled. Time is simulated;
 * the server's clock reads the same instants with an offset, to show that only durations cross over.
 */
import { LeaseMachine, type LeaseAction, type LeaseEvent, type LeaseTimerKey } from "../../src/cluster/lease-machine.js";
import type { LeaseTimings } from "../../src/cluster/timings.js";

/** An event without its time: what the server answers, timed when it arrives. */
type Answer = LeaseEvent extends infer E ? (E extends LeaseEvent ? Omit<E, "at"> : never) : never;

export interface Run {
  readonly node: string;
  readonly generation: bigint;
  readonly from: number;
  to: number | null;
}

interface Pending {
  readonly at: number;
  readonly deliver: () => void;
}

export class LeaseRow {
  generation = 0n;
  holder: string | null = null;
  expiresAt = -Infinity;
  holderSessionAlive = false;
}

export class WorldNode {
  readonly machine: LeaseMachine;
  readonly timers = new Map<LeaseTimerKey, number>();
  readonly actions: { readonly at: number; readonly action: LeaseAction }[] = [];
  /** Cut off from the database: queries and notifications are lost, the shell cancels queries at their timeout. */
  partitioned = false;
  /** Dead (SIGKILLed postmaster): handles nothing any more. */
  dead = false;
  /** How long the worker takes to exit after SIGTERM (Infinity: it ignores SIGTERM). */
  termExitMs = 50;
  worker: Run | null = null;
  done = false;

  constructor(
    readonly world: LeaseWorld,
    readonly id: string,
    readonly backendPid: number,
    timings: LeaseTimings,
  ) {
    this.machine = new LeaseMachine({ worker: "scheduler", nodeId: id, timings });
  }

  feed(event: LeaseEvent): void {
    if (this.dead) return;
    for (const action of this.machine.handle(event)) {
      this.actions.push({ at: this.world.now, action });
      this.carryOut(action);
    }
  }

  carryOut(action: LeaseAction): void {
    const w = this.world;
    switch (action.type) {
      case "setTimer":
        this.timers.set(action.key, w.now + action.delayMs);
        return;
      case "clearTimer":
        this.timers.delete(action.key);
        return;
      case "startWorker": {
        const run: Run = { node: this.id, generation: action.generation, from: w.now, to: null };
        this.worker = run;
        w.runs.push(run);
        w.later(0, () => this.feed({ kind: "worker-started", at: w.now, pid: 1000 + w.runs.length }));
        return;
      }
      case "stopWorker": {
        const run = this.worker;
        if (run === null) return;
        const delay = action.signal === "SIGKILL" ? 0 : this.termExitMs;
        if (delay === Infinity) return;
        w.later(delay, () => this.workerGone(run));
        return;
      }
      case "query":
        return this.query(action);
      case "log":
      case "fail":
        return;
      case "done":
        this.done = true;
        return;
    }
  }

  workerGone(run: Run): void {
    if (run.to !== null) return;
    run.to = this.world.now;
    if (this.worker === run) this.worker = null;
    this.feed({ kind: "worker-exited", at: this.world.now, pid: 0, final: false });
  }

  query(action: Extract<LeaseAction, { type: "query" }>): void {
    const w = this.world;
    const sent = w.now;
    if (this.partitioned) {
      w.later(action.timeoutMs, () => this.feed({ kind: "query-failed", at: w.now, query: action.query, reason: "timeout" }));
      return;
    }
    // Evaluated on the server half-way, answered after the full latency.
    w.later(w.latencyMs / 2, () => {
      const event = w.evaluate(this, action);
      w.at(sent + w.latencyMs, () => {
        if (this.partitioned) this.feed({ kind: "query-failed", at: w.now, query: action.query, reason: "timeout" });
        else this.feed({ ...event, at: w.now } as LeaseEvent);
      });
    });
  }

  /**
   * `pg_terminate_backend` of the node's cluster session: its lock is gone on the server at once, the node
   * hears of it a half round trip later, and opens a new session after `reconnectMs`.
   */
  terminateSession(reconnectMs: number): void {
    const w = this.world;
    if (w.row.holder === this.id) w.row.holderSessionAlive = false;
    w.later(w.latencyMs / 2, () => this.feed({ kind: "session-lost", at: w.now, reason: "terminating connection due to administrator command" }));
    w.later(reconnectMs, () => this.feed({ kind: "session-opened", at: w.now, backendPid: this.backendPid }));
  }

  /** SIGKILL of the postmaster: its workers die with it (parent-death signal), its session ends at once. */
  kill(): void {
    this.dead = true;
    this.timers.clear();
    if (this.worker !== null) {
      this.worker.to = this.world.now;
      this.worker = null;
    }
    if (this.world.row.holder === this.id) this.world.row.holderSessionAlive = false;
  }
}

export class LeaseWorld {
  now = 0;
  /** The server's clock reads `now + serverOffsetMs`. */
  serverOffsetMs = 3_600_000 + 1_700_000_000_000;
  latencyMs = 2;
  readonly row = new LeaseRow();
  readonly runs: Run[] = [];
  readonly nodes: WorldNode[] = [];
  #pending: Pending[] = [];

  constructor(readonly timings: LeaseTimings) {}

  add(id: string): WorldNode {
    const node = new WorldNode(this, id, 100 + this.nodes.length, timings(this));
    this.nodes.push(node);
    node.feed({ kind: "session-opened", at: this.now, backendPid: node.backendPid });
    return node;
  }

  get serverNow(): number {
    return this.now + this.serverOffsetMs;
  }

  later(delayMs: number, deliver: () => void): void {
    this.at(this.now + delayMs, deliver);
  }

  at(at: number, deliver: () => void): void {
    this.#pending.push({ at, deliver });
  }

  /** The lease row's answer, as lease-sql.ts's statements give it. */
  evaluate(node: WorldNode, q: Extract<LeaseAction, { type: "query" }>): Answer {
    const row = this.row;
    const serverNow = this.serverNow;
    const L = node.machine.timings.leaseMs;
    if (q.query === "acquire") {
      const free = row.holder === null || row.expiresAt <= serverNow || !row.holderSessionAlive || row.holder === node.id;
      if (!free) return { kind: "busy", holder: row.holder ?? "", generation: row.generation, serverNow, expiresAt: row.expiresAt };
      row.generation += 1n;
      row.holder = node.id;
      row.expiresAt = serverNow + L;
      row.holderSessionAlive = true;
      return { kind: "acquired", generation: row.generation, serverNow, expiresAt: row.expiresAt, backendPid: node.backendPid };
    }
    if (q.query === "renew") {
      if (row.holder !== node.id || row.generation !== q.generation || row.expiresAt <= serverNow) return { kind: "renew-rejected", generation: q.generation };
      row.expiresAt = serverNow + L;
      return { kind: "renewed", generation: row.generation, serverNow, expiresAt: row.expiresAt, backendPid: node.backendPid };
    }
    if (row.holder === node.id && row.generation === q.generation) {
      row.holder = null;
      row.expiresAt = serverNow;
      for (const other of this.nodes) {
        if (other !== node && !other.partitioned) {
          this.later(this.latencyMs / 2, () => other.feed({ kind: "notified", at: this.now, node: node.id, generation: q.generation }));
        }
      }
    }
    return { kind: "released", generation: q.generation };
  }

  /** Runs everything due up to `until`, in time order: pending deliveries first, then timers. */
  runUntil(until: number): void {
    for (;;) {
      const next = this.#next();
      if (next === null || next.at > until) break;
      this.now = Math.max(this.now, next.at);
      next.fire();
    }
    this.now = Math.max(this.now, until);
  }

  #next(): { at: number; fire: () => void } | null {
    let best: { at: number; fire: () => void } | null = null;
    this.#pending.sort((a, b) => a.at - b.at);
    const first = this.#pending[0];
    if (first !== undefined) best = { at: first.at, fire: () => { this.#pending.shift(); first.deliver(); } };
    for (const node of this.nodes) {
      if (node.dead) continue;
      for (const [key, at] of node.timers) {
        if (best === null || at < best.at) {
          best = { at, fire: () => { node.timers.delete(key); node.feed({ kind: "timer", at: this.now, key }); } };
        }
      }
    }
    return best;
  }

  /** Pairs of runs of different nodes whose lives overlap: must be none. */
  overlaps(): [Run, Run][] {
    const out: [Run, Run][] = [];
    for (const a of this.runs) {
      for (const b of this.runs) {
        if (a === b || a.node === b.node || a.from > b.from) continue;
        if ((a.to ?? Infinity) > b.from) out.push([a, b]);
      }
    }
    return out;
  }
}

function timings(world: LeaseWorld): LeaseTimings {
  return world.timings;
}
