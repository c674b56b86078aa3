/**
 * The benchmark (`npm run bench`; never part of `npm test`). One postmaster runs in this process
 * (`--no-database`, shared memory from ./extension.ts, every worker dynamic) and each measure is set against
 * its message-passing peer on the same machine, in the same process tree:
 *
 *   1. dynamic launch to Started (`loadDynamic()` + `waitForStartup()`, warm spare runners)
 *      vs a cold `child_process.fork` of a plain Node script that sends one message;
 *   2. setLatch -> waitLatch wake-up across processes (half a latch round trip between two workers)
 *      vs half a `process.send` round trip between a parent and a forked child;
 *   3. PgAtomic.add and PgLwLock.exclusive increments per second, in one process and in two worker
 *      processes at once, vs the same increments sent as `process.send` messages to a parent that counts.
 *
 * Every figure is a median over repeated runs. Prints a table and writes bench/results/latest.json.
 */
import { fork, type ChildProcess } from "node:child_process";
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { BackgroundWorkerBuilder, Postmaster, type DynamicBackgroundWorker } from "bgworker";
import { COUNTER, GATE, HITS, PING_PID, PONG_PID, READY } from "./shared.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const EXTENSION = join(HERE, "extension.ts");
const WORKERS = join(HERE, "workers.ts");
const PEER = join(HERE, "peer-child.mjs");
const RESULTS = join(HERE, "results", "latest.json");

const SPARES = 2; // the postmaster's spareRunners
const LAUNCHES = 11; // launch-latency samples (after 2 warm-ups), each side
const PING_RUNS = 3; // latch / IPC ping-pong runs
const PING_ROUNDS = 500; // round trips per run
const COUNT_RUNS = 5; // shared-memory throughput runs in this process
const WORKER_RUNS = 3; // shared-memory throughput runs in worker processes (each launches the workers)
const MESSAGE_RUNS = 3; // message-passing throughput runs (each takes seconds)
const SHMEM_OPS = 1_000_000; // increments per shared-memory throughput run (split between the processes)
const MESSAGE_OPS = 100_000; // increments per message-passing run (split between the children)

// ----- helpers ---------------------------------------------------------------------------------------

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const benchStart = performance.now();

function progress(text: string): void {
  process.stderr.write(`bench: ${((performance.now() - benchStart) / 1000).toFixed(1)} s: ${text}\n`);
}

async function until(what: string, done: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`bench: timed out waiting for ${what}`);
    await sleep(1);
  }
}

// ----- the postmaster and the reports of its workers --------------------------------------------------

type Report = { bench: string; pid: number; [field: string]: unknown };
const reports: Report[] = [];
const reportWaiters = new Set<() => void>();

/** The postmaster's log: worker reports are collected, errors shown, the rest dropped. */
function logSink(line: string): void {
  let record: { level?: string; message?: string; stream?: string; detail?: string };
  try {
    record = JSON.parse(line) as typeof record;
  } catch {
    return;
  }
  if (record.stream === "stdout" && record.message?.startsWith("{")) {
    try {
      const report = JSON.parse(record.message) as Report;
      if (typeof report.bench === "string") {
        reports.push(report);
        for (const waiter of reportWaiters) waiter();
        return;
      }
    } catch {
      // not a report
    }
  }
  if (record.level === "ERROR" || record.level === "FATAL" || record.level === "WARNING" || record.stream === "stderr") {
    process.stderr.write(`postmaster log: ${line}\n`);
  }
}

function reportFrom(pid: number, timeoutMs = 60_000): Promise<Report> {
  return new Promise((resolve, reject) => {
    const check = (): void => {
      const found = reports.find((r) => r.pid === pid);
      if (found === undefined) return;
      clearTimeout(timer);
      reportWaiters.delete(check);
      resolve(found);
    };
    const timer = setTimeout(() => {
      reportWaiters.delete(check);
      reject(new Error(`bench: no report from worker ${pid}`));
    }, timeoutMs);
    reportWaiters.add(check);
    check();
  });
}

function builder(fn: string, extra: string, argument?: number): BackgroundWorkerBuilder {
  const b = new BackgroundWorkerBuilder(`bench ${fn}`).setLibrary(WORKERS).setFunction(fn).setExtra(extra).enableShmemAccess();
  if (argument !== undefined) b.setArgument(argument);
  return b;
}

async function started(fn: string, extra: string, argument?: number): Promise<{ worker: DynamicBackgroundWorker; pid: number }> {
  const worker = await builder(fn, extra, argument).loadDynamic();
  return { worker, pid: await worker.waitForStartup() };
}

// ----- the message-passing peer ------------------------------------------------------------------------

const children = new Set<ChildProcess>();

/** Forks the plain peer script cold: plain `node`, none of this process's flags (no tsx). */
function forkPeer(...args: string[]): ChildProcess {
  const child = fork(PEER, args, { execArgv: [], stdio: ["ignore", "ignore", "inherit", "ipc"] });
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

function nextMessage(child: ChildProcess, t: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: { t?: string }): void => {
      if (message.t !== t) return;
      child.off("message", onMessage);
      child.off("exit", onExit);
      resolve();
    };
    const onExit = (): void => reject(new Error(`bench: peer exited before "${t}"`));
    child.on("message", onMessage);
    child.once("exit", onExit);
  });
}

async function endPeer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  if (child.connected) child.disconnect();
  else child.kill("SIGKILL");
  await exited;
}

// ----- 1. launch latency ----------------------------------------------------------------------------------

/**
 * Waits until the postmaster's spare runners have booted, so that the launches measured are warm ones. It
 * looks at the postmaster's internal runner pool (no public API says this); without it, it waits 2 s.
 */
async function sparesWarm(pm: Postmaster): Promise<void> {
  const pool = (pm as unknown as { runners?: { spares?: { ready?: unknown }[] } }).runners?.spares;
  if (!Array.isArray(pool)) return sleep(2_000);
  await until("warm spare runners", () => pool.length >= SPARES && pool.every((runner) => runner.ready === true));
}

async function launchLatency(pm: Postmaster): Promise<{ bgworker: number[]; fork: number[] }> {
  const bgworker: number[] = [];
  for (let i = 0; i < LAUNCHES + 2; i++) {
    await sparesWarm(pm);
    await sleep(20);
    const t0 = performance.now();
    const { worker } = await started("idle", "launch");
    const ms = performance.now() - t0;
    if (i >= 2) bgworker.push(ms);
    await worker.terminate().waitForShutdown();
  }
  const cold: number[] = [];
  for (let i = 0; i < LAUNCHES + 2; i++) {
    await sleep(50);
    const t0 = performance.now();
    const child = forkPeer("hello");
    await nextMessage(child, "started");
    const ms = performance.now() - t0;
    if (i >= 2) cold.push(ms);
    await endPeer(child);
  }
  return { bgworker, fork: cold };
}

// ----- 2. wake-up latency ---------------------------------------------------------------------------------

async function wakeLatency(): Promise<{ latchUs: number[]; ipcUs: number[] }> {
  const latchUs: number[] = [];
  for (let run = 0; run < PING_RUNS; run++) {
    PING_PID.set(0);
    PONG_PID.set(0);
    const pong = await started("ponger", "pong");
    const ping = await started("pinger", "ping", PING_ROUNDS);
    const report = await reportFrom(ping.pid);
    latchUs.push(median(report.rttUs as number[]) / 2);
    await ping.worker.waitForShutdown();
    await pong.worker.terminate().waitForShutdown();
  }
  const ipcUs: number[] = [];
  for (let run = 0; run < PING_RUNS; run++) {
    const child = forkPeer("pingpong");
    const rtt: number[] = [];
    for (let i = 0; i < PING_ROUNDS + 20; i++) {
      const t0 = performance.now();
      const answered = nextMessage(child, "ping");
      child.send({ t: "ping" });
      await answered;
      if (i >= 20) rtt.push((performance.now() - t0) * 1000);
    }
    ipcUs.push(median(rtt) / 2);
    await endPeer(child);
  }
  return { latchUs, ipcUs };
}

// ----- 3. throughput ----------------------------------------------------------------------------------------

function reset(): void {
  HITS.set(0n);
  COUNTER.exclusive((s) => void (s.count = 0n));
  READY.set(0);
  GATE.set(0);
}

/** Increments per second in this process (the postmaster, attached to the segment like any worker). */
function inProcess(kind: "atomic" | "lock"): number[] {
  const rates: number[] = [];
  for (let run = 0; run < COUNT_RUNS; run++) {
    reset();
    const t0 = performance.now();
    if (kind === "lock") {
      for (let i = 0; i < SHMEM_OPS; i++) COUNTER.exclusive((s) => void (s.count += 1n));
    } else {
      for (let i = 0; i < SHMEM_OPS; i++) HITS.add(1n);
    }
    const ms = performance.now() - t0;
    const total = kind === "lock" ? COUNTER.share((s) => s.count) : HITS.get();
    if (total !== BigInt(SHMEM_OPS)) throw new Error(`bench: ${kind} total ${total}, expected ${SHMEM_OPS}`);
    rates.push(SHMEM_OPS / (ms / 1000));
  }
  return rates;
}

/** Increments per second of `processes` workers at once (from the gate to the last one done). */
async function inWorkers(kind: "atomic" | "lock", processes: number): Promise<number[]> {
  const rates: number[] = [];
  for (let run = 0; run < WORKER_RUNS; run++) {
    reset();
    const workers = await Promise.all(Array.from({ length: processes }, () => started("adder", kind, SHMEM_OPS / processes)));
    await until("the adders at the gate", () => READY.get() === processes);
    GATE.set(1);
    const done = await Promise.all(workers.map(({ pid }) => reportFrom(pid)));
    await Promise.all(workers.map(({ worker }) => worker.waitForShutdown()));
    const total = kind === "lock" ? COUNTER.share((s) => s.count) : HITS.get();
    if (total !== BigInt(SHMEM_OPS)) throw new Error(`bench: ${kind} total ${total} from ${processes} workers, expected ${SHMEM_OPS}`);
    rates.push(SHMEM_OPS / (Math.max(...done.map((r) => r.ms as number)) / 1000));
  }
  return rates;
}

/** The peer: `processes` children send MESSAGE_OPS increments in total as messages; the parent counts them. */
async function byMessages(processes: number): Promise<number[]> {
  const rates: number[] = [];
  for (let run = 0; run < MESSAGE_RUNS; run++) {
    const peers = Array.from({ length: processes }, () => forkPeer("count", String(MESSAGE_OPS / processes)));
    await Promise.all(peers.map((child) => nextMessage(child, "ready")));
    let count = 0;
    let finished = 0;
    const allDone = new Promise<void>((resolve) => {
      for (const child of peers) {
        child.on("message", (message: { t?: string }) => {
          if (message.t === "inc") count += 1;
          else if (message.t === "done" && ++finished === processes) resolve();
        });
      }
    });
    const t0 = performance.now();
    for (const child of peers) child.send({ t: "go" });
    await allDone;
    const ms = performance.now() - t0;
    if (count !== MESSAGE_OPS) throw new Error(`bench: counted ${count} messages, expected ${MESSAGE_OPS}`);
    rates.push(MESSAGE_OPS / (ms / 1000));
    await Promise.all(peers.map(endPeer));
  }
  return rates;
}

// ----- the table ----------------------------------------------------------------------------------------------

interface Row {
  measure: string;
  unit: string;
  bgworker: number;
  peer: number;
  peerLabel: string;
  /** How many times better bgworker is (peer/bgworker for latencies, bgworker/peer for rates). */
  ratio: number;
}

function latencyRow(measure: string, unit: string, ours: number[], peers: number[], peerLabel: string): Row {
  const bgworker = median(ours);
  const peer = median(peers);
  return { measure, unit, bgworker, peer, peerLabel, ratio: peer / bgworker };
}

function rateRow(measure: string, ours: number[], peers: number[], peerLabel: string): Row {
  const bgworker = median(ours);
  const peer = median(peers);
  return { measure, unit: "ops/s", bgworker, peer, peerLabel, ratio: bgworker / peer };
}

function figure(value: number, unit: string): string {
  if (unit === "ops/s") return value >= 1e6 ? `${(value / 1e6).toFixed(2)} M/s` : `${(value / 1e3).toFixed(0)} k/s`;
  return `${value < 10 ? value.toFixed(2) : value.toFixed(1)} ${unit}`;
}

function printTable(rows: readonly Row[]): void {
  const lines = [["measure", "bgworker", "peer baseline", "", "ratio"]];
  for (const row of rows) {
    lines.push([row.measure, figure(row.bgworker, row.unit), figure(row.peer, row.unit), row.peerLabel, `${row.ratio.toFixed(1)}x`]);
  }
  const widths = lines[0]!.map((_, i) => Math.max(...lines.map((line) => line[i]!.length)));
  const format = (line: string[]): string => line.map((cell, i) => (i === 0 || i === 3 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  ");
  console.log(format(lines[0]!));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const line of lines.slice(1)) console.log(format(line));
  console.log("(medians over repeated runs; ratio = how many times faster bgworker is than the peer)");
}

// ----- main ---------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const began = performance.now();
  const loadAtStart = loadavg()[0]!;
  const pm = new Postmaster({
    extensions: [EXTENSION],
    database: false,
    socketPath: false,
    logFormat: "json",
    logSink,
    spareRunners: SPARES,
    cwd: HERE,
  });
  let rows: Row[];
  let raw: Record<string, number[]>;
  try {
    await pm.start();
    progress(`postmaster ${pm.pid} ready, shared memory ${pm.status().postmaster.shmemBytes} bytes`);

    progress("1/3 launch latency");
    const launch = await launchLatency(pm);
    progress("2/3 wake-up latency");
    const wake = await wakeLatency();
    progress("3/3 throughput");
    const atomic1 = inProcess("atomic");
    progress("3/3 throughput: 1 process done");
    const lock1 = inProcess("lock");
    const atomic2 = await inWorkers("atomic", 2);
    const lock2 = await inWorkers("lock", 2);
    progress("3/3 throughput: 2 processes done");
    const messages1 = await byMessages(1);
    const messages2 = await byMessages(2);

    rows = [
      latencyRow("dynamic launch -> Started (warm spare)", "ms", launch.bgworker, launch.fork, "cold fork of a plain Node script"),
      latencyRow("setLatch -> waitLatch wake-up", "us", wake.latchUs, wake.ipcUs, "process.send one way (half RTT)"),
      rateRow("PgAtomic.add, 1 process", atomic1, messages1, "process.send increments, 1 child"),
      rateRow("PgLwLock.exclusive, 1 process", lock1, messages1, "process.send increments, 1 child"),
      rateRow("PgAtomic.add, 2 processes", atomic2, messages2, "process.send increments, 2 children"),
      rateRow("PgLwLock.exclusive, 2 processes", lock2, messages2, "process.send increments, 2 children"),
    ];
    raw = {
      launchMs: launch.bgworker,
      coldForkMs: launch.fork,
      latchWakeUs: wake.latchUs,
      ipcOneWayUs: wake.ipcUs,
      atomicAdd1ProcessOpsPerS: atomic1,
      lwlockExclusive1ProcessOpsPerS: lock1,
      atomicAdd2ProcessesOpsPerS: atomic2,
      lwlockExclusive2ProcessesOpsPerS: lock2,
      messages1ChildOpsPerS: messages1,
      messages2ChildrenOpsPerS: messages2,
    };
    progress("done");
  } finally {
    await Promise.all([...children].map(endPeer));
    await pm.stop("fast");
  }
  const leftover = readdirSync("/dev/shm").filter((file) => file.startsWith(`bgworker.${process.pid}.`));
  if (leftover.length > 0) throw new Error(`bench: shared memory left behind: ${leftover.join(", ")}`);

  printTable(rows);
  const seconds = (performance.now() - began) / 1000;
  mkdirSync(dirname(RESULTS), { recursive: true });
  const result = {
    date: new Date().toISOString(),
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    cpus: availableParallelism(),
    cpuModel: cpus()[0]?.model ?? "unknown",
    /** The machine's 1-minute load average at the start and at the end: other work skews every figure. */
    loadAverage: [loadAtStart, loadavg()[0]!].map((load) => Math.round(load * 100) / 100),
    seconds: Math.round(seconds * 10) / 10,
    settings: { LAUNCHES, PING_RUNS, PING_ROUNDS, COUNT_RUNS, WORKER_RUNS, MESSAGE_RUNS, SHMEM_OPS, MESSAGE_OPS, SPARES },
    table: rows.map((row) => ({ ...row, ratio: Math.round(row.ratio * 100) / 100 })),
    raw,
  };
  writeFileSync(RESULTS, JSON.stringify(result, null, 2) + "\n");
  console.log(`wrote ${RESULTS} (${result.seconds} s; load average ${result.loadAverage.join(" -> ")} on ${result.cpus} CPUs)`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    for (const child of children) child.kill("SIGKILL");
    process.exit(1);
  },
);
