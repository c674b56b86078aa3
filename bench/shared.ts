/** Shared memory structures of the benchmark, imported by the extension, the workers and bench/run.ts. */
import { PgAtomic, PgLwLock } from "bgworker";

/** The counter that the throughput runs add to. */
export const HITS = new PgAtomic("bench_hits", "u64");
export const COUNTER = new PgLwLock("bench_counter", { count: "u64" });
/** Throughput workers add 1 once attached and wait until GATE is 1, so that they run at the same time. */
export const READY = new PgAtomic("bench_ready", "u32");
export const GATE = new PgAtomic("bench_gate", "u32");
/** The latch ping-pong: each side publishes its pid. */
export const PING_PID = new PgAtomic("bench_ping_pid", "u32");
export const PONG_PID = new PgAtomic("bench_pong_pid", "u32");

export const ALL = [HITS, COUNTER, READY, GATE, PING_PID, PONG_PID] as const;
