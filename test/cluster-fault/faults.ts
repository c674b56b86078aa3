/**
 * The faults of issue #20, each a function that injects one into the steady state (holder, its worker) and
 * returns how to undo it. What each shows:
 *
 * - graceful: `bgworker stop --mode fast` of the holder: the worker stops, the lease is released with a
 *   NOTIFY and another node takes it at once (SPEC: p50 100 ms). The stopped node is replaced by a fresh one.
 * - kill: SIGKILL of the holder's postmaster: its cluster worker dies with it (parent-death signal), its
 *   session and advisory lock go with its socket, and the next poll of another node takes the lease.
 * - freeze: SIGSTOP of the holder's postmaster and its worker for 10 s, then SIGCONT: the lease expires by
 *   the server's clock, another node takes it and terminates the frozen holder's sessions; on waking, the
 *   old postmaster must kill its worker before anything else.
 * - relay: a half-open partition of the holder (its relay stops forwarding, nothing closes): the holder
 *   stops its worker on its own deadlines, before the lease expires and another node takes it.
 * - netns: the same, cut in the kernel: packets from the holder's network namespace dropped (root only).
 * - terminate-cluster: pg_terminate_backend of the holder's cluster session: its lock is gone, it kills its
 *   worker at once, and the lease moves to whichever node asks first (itself on a new session, or another).
 * - terminate-spi: pg_terminate_backend of the worker's own session: SIGTERM to the worker (SPEC §6), which
 *   exits and is restarted by its restart time on the same node, under the same lease.
 * - pg-fast, pg-immediate: `pg_ctl restart -m fast|immediate` of PostgreSQL: every session ends, every lease
 *   is lost, and one node takes it again once the server is back.
 */
import { DEFAULT_RESTART_BACKOFF } from "../../src/postmaster/rules.js";
import { sleep, type Steady, type World } from "./world.js";

export type FaultName = "graceful" | "kill" | "freeze" | "relay" | "netns" | "terminate-cluster" | "terminate-spi" | "pg-fast" | "pg-immediate";

export const FAULT_NAMES: readonly FaultName[] = ["graceful", "kill", "freeze", "relay", "netns", "terminate-cluster", "terminate-spi", "pg-fast", "pg-immediate"];

/**
 * What must follow the fault:
 * - `other-node`: a new generation on another node (the holder is gone, frozen or cut off);
 * - `new-generation`: a new generation on any node (every session was ended; the holder may win again);
 * - `resume`: the singleton comes back on the same lease (a new process; the generation may stay).
 */
export type Expectation = "other-node" | "new-generation" | "resume";

export interface Injected {
  /** When the fault was injected, by this host's wall clock (ms) and monotonic clock (ns). */
  readonly at: number;
  readonly mono: bigint;
  /** Undoes the fault (for a freeze: waits for its end). Called once the outcome is in, or the deadline passed. */
  restore(): Promise<void>;
  /** The holder's postmaster is gone: replace it by a fresh node once restored. */
  readonly replaceHolder: boolean;
  /** Lines for the trial's record. */
  readonly notes: string[];
}

export interface Fault {
  readonly name: FaultName;
  readonly title: string;
  readonly route: "relay" | "netns";
  readonly expect: Expectation;
  /**
   * How long the singleton's process must have run before the fault (ms; default 0). A fault that makes the
   * singleton exit and come back by its restart time counts as a failure: trials closer together than the
   * postmaster's fast-failure window would make a restart storm that SPEC §6 damps, and measure the damping.
   */
  readonly minUptimeMs?: number;
  inject(world: World, steady: Steady): Promise<Injected>;
}

/** The fault's instant on both clocks, taken as close to the injection as the caller can. */
function now(): { at: number; mono: bigint } {
  return { at: Date.now(), mono: process.hrtime.bigint() };
}

function tryKill(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}

const graceful: Fault = {
  name: "graceful",
  title: "bgworker stop --mode fast of the holder's postmaster",
  route: "relay",
  expect: "other-node",
  async inject(_world, { holder }) {
    const t = now();
    const stopped = holder.stopByCli("fast");
    const notes: string[] = [];
    return {
      ...t,
      notes,
      replaceHolder: true,
      async restore() {
        const result = await stopped;
        if (result.code !== 0) notes.push(`bgworker stop exited with ${result.code}: ${result.stderr.trim()}`);
        if (!(await holder.waitExit(20_000))) notes.push(`${holder.nodeId} still ran 20 s after bgworker stop --mode fast`);
      },
    };
  },
};

const kill: Fault = {
  name: "kill",
  title: "SIGKILL of the holder's postmaster",
  route: "relay",
  expect: "other-node",
  async inject(_world, { holder }) {
    const t = now();
    holder.signal("SIGKILL");
    return {
      ...t,
      notes: [],
      replaceHolder: true,
      async restore() {
        await holder.waitExit(10_000);
      },
    };
  },
};

/** SIGSTOP of the holder's postmaster and worker for `freezeMs`, then SIGCONT (postmaster first). */
export function freezeFault(freezeMs: number): Fault {
  return {
    name: "freeze",
    title: `SIGSTOP of the holder's postmaster and its worker for ${freezeMs / 1000} s, then SIGCONT`,
    route: "relay",
    expect: "other-node",
    async inject(_world, { holder, workerPid }) {
      const t = now();
      holder.signal("SIGSTOP");
      tryKill(workerPid, "SIGSTOP");
      const notes: string[] = [];
      const woken = sleep(Math.max(0, t.at + freezeMs - Date.now())).then(() => {
        const at = Date.now();
        holder.signal("SIGCONT");
        tryKill(workerPid, "SIGCONT");
        return at;
      });
      return {
        ...t,
        notes,
        replaceHolder: false,
        async restore() {
          const at = await woken;
          // On waking, the old holder must give its lease up and its worker must go (docs/cluster.md).
          const lost = await holder.until(() => holder.leaseEvents("leadership-lost").find((e) => e.at >= at - 1000), 10_000);
          notes.push(lost === undefined ? `${holder.nodeId} logged no leadership-lost within 10 s of SIGCONT` : `${holder.nodeId} logged leadership-lost ${lost.at - at} ms after SIGCONT (${lost.reason ?? ""})`);
          const gone = await holder.until(() => (holder.owns(workerPid) ? undefined : Date.now()), 10_000);
          notes.push(gone === undefined ? `its worker ${workerPid} still ran 10 s after SIGCONT` : `its worker ${workerPid} gone ${gone - at} ms after SIGCONT`);
        },
      };
    },
  };
}

const relay: Fault = {
  name: "relay",
  title: "half-open partition of the holder: its TCP relay stops forwarding, nothing is closed",
  route: "relay",
  expect: "other-node",
  async inject(world, { holder }) {
    const r = world.relays.get(holder.label)!;
    const t = now();
    r.pause();
    return {
      ...t,
      notes: [],
      replaceHolder: false,
      async restore() {
        r.resume();
      },
    };
  },
};

const netns: Fault = {
  name: "netns",
  title: "partition of the holder's network namespace: every packet from its side dropped (tc pfifo limit 0)",
  route: "netns",
  expect: "other-node",
  async inject(world, { holder }) {
    const link = world.links.get(holder.label)!;
    const t0 = now();
    await link.drop();
    // The instant the qdisc is in place: `tc` takes a few ms to run.
    const t = { at: Date.now(), mono: process.hrtime.bigint() };
    return {
      ...t,
      notes: [`tc took ${t.at - t0.at} ms`],
      replaceHolder: false,
      async restore() {
        await link.restore();
      },
    };
  },
};

const terminateCluster: Fault = {
  name: "terminate-cluster",
  title: "pg_terminate_backend of the holder's cluster session",
  route: "relay",
  expect: "new-generation",
  async inject(world, { holder }) {
    const pid = (await world.clusterSessions()).get(holder.nodeId);
    if (pid === undefined) throw new Error(`no cluster session of ${holder.nodeId} in pg_stat_activity`);
    const t = now();
    const [row] = await world.query<{ done: boolean }>("select pg_terminate_backend($1) as done", [pid]);
    return { ...t, notes: row?.done === true ? [] : [`pg_terminate_backend(${pid}) returned false`], replaceHolder: false, restore: async () => undefined };
  },
};

const terminateSpi: Fault = {
  name: "terminate-spi",
  title: "pg_terminate_backend of the singleton's own SPI session",
  route: "relay",
  expect: "resume",
  // Past the fast-failure window, each trial's exit is an ordinary first failure: restarted after its restart time.
  minUptimeMs: DEFAULT_RESTART_BACKOFF.fastFailureMs + 250,
  async inject(world) {
    // The sessions enrolled under the current generation that still exist, else the singleton's by application_name.
    const enrolled = await world.enrolledSessions();
    const pids = enrolled.length > 0 ? enrolled : await world.workerSessions();
    if (pids.length === 0) throw new Error("the singleton has no SPI session in pg_stat_activity");
    const t = now();
    await world.query("select pg_terminate_backend(pid) from unnest($1::int[]) as pid", [pids]);
    return { ...t, notes: [`terminated ${pids.join(", ")}`], replaceHolder: false, restore: async () => undefined };
  },
};

function restartServer(mode: "fast" | "immediate"): Fault {
  return {
    name: mode === "fast" ? "pg-fast" : "pg-immediate",
    title: `pg_ctl restart -m ${mode} of PostgreSQL`,
    route: "relay",
    expect: "new-generation",
    async inject(world) {
      const t = now();
      const began = performance.now();
      await world.restartServer(mode);
      return { ...t, notes: [`pg_ctl restart took ${Math.round(performance.now() - began)} ms`], replaceHolder: false, restore: async () => undefined };
    },
  };
}

/** Every fault by name; `freezeMs` is the freeze's length (issue #20: 10 s). */
export function faultsByName(freezeMs: number): Map<FaultName, Fault> {
  const all = [graceful, kill, freezeFault(freezeMs), relay, netns, terminateCluster, terminateSpi, restartServer("fast"), restartServer("immediate")];
  return new Map(all.map((f) => [f.name, f]));
}
