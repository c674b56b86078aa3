/**
 * The worker libraries and extensions of the benchmark, written into the user's project (never inside this
 * package). Each worker writes what it measured to the report file named by its extra, one line per event,
 * with wall-clock milliseconds (`performance.timeOrigin + performance.now()`), so that nothing it reports is
 * delayed by the postmaster's log.
 */
import { ADDON, type Project } from "./project.js";

/**
 * An idle worker: Started once entered, ends when terminated. `ts` gives it real TypeScript syntax. With
 * `enteredFile`, its first act is to append `enter <Date.now()>` there: when its function began, on the
 * machine's clock.
 */
export function idleSource(ts: boolean, tag: string, enteredFile?: string): string {
  const annotation = ts ? ": Promise<void>" : "";
  const imports = enteredFile === undefined ? "" : `import { appendFileSync } from "node:fs";\n`;
  const enter = enteredFile === undefined ? "" : `  appendFileSync(${JSON.stringify(enteredFile)}, \`enter \${Date.now()}\\n\`);\n`;
  return `// ${tag}
${imports}import { BackgroundWorker, SignalWakeFlags } from "bgworker";
export async function idle()${annotation} {
${enter}  BackgroundWorker.attachSignalHandlers(SignalWakeFlags.SIGTERM);
  while (await BackgroundWorker.waitLatch(null)) {
    // woken for nothing
  }
}
`;
}

const SHARED = `import { PgAtomic } from "bgworker";
export const PING_PID = new PgAtomic("bench_ping_pid", "u32");
export const PONG_PID = new PgAtomic("bench_pong_pid", "u32");
export const PHASE = new PgAtomic("bench_phase", "u32");
`;

const EXTENSION = `import { pgShmemInit } from "bgworker";
import { PING_PID, PONG_PID, PHASE } from "./shared.js";
export function _PG_init() {
  pgShmemInit(PING_PID, PONG_PID, PHASE);
}
`;

const WORKERS = `import { appendFileSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { BackgroundWorker, SignalWakeFlags, Spi } from "bgworker";
import { PING_PID, PONG_PID, PHASE } from "./shared.js";

const now = () => performance.timeOrigin + performance.now();
const out = (line) => appendFileSync(BackgroundWorker.getExtra(), line + "\\n");
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const addon = () => createRequire(import.meta.url)(${JSON.stringify(ADDON)});

/** Restart measure: enters, runs a little over a second (so that no restart-storm damping applies), exits 1. */
export async function flapper() {
  out("enter " + now());
  await sleep(1050);
  out("exit " + now());
  process.exit(1);
}

/** Latch ping-pong, then the same round trips through a raw futex: the ponger side. */
export async function ponger() {
  BackgroundWorker.attachSignalHandlers(SignalWakeFlags.SIGTERM);
  PONG_PID.set(process.pid);
  while (PHASE.get() === 0) {
    if (!(await BackgroundWorker.waitLatch(null))) return;
    if (PHASE.get() === 0) BackgroundWorker.setLatch(PING_PID.get());
  }
  // Futex phase: a segment of the pinger's, mapped through the native addon; word 0 is the ball.
  const shm = addon();
  const buffer = shm.open("/bgworker-bench-futex-" + PING_PID.get());
  const word = new Int32Array(buffer);
  Atomics.store(word, 1, 1); // here
  shm.wake(buffer, 4, 1);
  for (;;) {
    const value = Atomics.load(word, 0);
    if (value === 3) break;
    if (value === 1) {
      Atomics.store(word, 0, 2);
      shm.wake(buffer, 0, 1);
      continue;
    }
    shm.wait(buffer, 0, value, 5000);
  }
  shm.unmap(buffer);
}

export async function pinger(rounds) {
  BackgroundWorker.attachSignalHandlers(SignalWakeFlags.SIGTERM);
  PING_PID.set(process.pid);
  while (PONG_PID.get() === 0) await sleep(1);
  const pong = PONG_PID.get();
  const n = Number(rounds);
  const latchUs = [];
  for (let i = 0; i < n + 50; i++) {
    const t0 = performance.now();
    BackgroundWorker.setLatch(pong);
    if (!(await BackgroundWorker.waitLatch(5000))) throw new Error("terminated during the ping-pong");
    if (i >= 50) latchUs.push((performance.now() - t0) * 1000);
  }
  const shm = addon();
  const name = "/bgworker-bench-futex-" + process.pid;
  const buffer = shm.create(name, 64);
  const word = new Int32Array(buffer);
  PHASE.set(1);
  BackgroundWorker.setLatch(pong);
  while (Atomics.load(word, 1) === 0) shm.wait(buffer, 4, 0, 1000);
  const futexUs = [];
  for (let i = 0; i < n + 50; i++) {
    const t0 = performance.now();
    Atomics.store(word, 0, 1);
    shm.wake(buffer, 0, 1);
    while (Atomics.load(word, 0) === 1) shm.wait(buffer, 0, 1, 5000);
    if (i >= 50) futexUs.push((performance.now() - t0) * 1000);
  }
  Atomics.store(word, 0, 3);
  shm.wake(buffer, 0, 1);
  shm.unlink(name);
  shm.unmap(buffer);
  out(JSON.stringify({ latchUs, futexUs }));
}

/** SPI: launch until the first query is answered (the default session, or another database's). */
async function firstQuery(dbname) {
  await BackgroundWorker.connectWorkerToSpi(dbname, null);
  await BackgroundWorker.transaction(async () => {
    await Spi.getOne("SELECT 1");
    out("answered " + now());
  });
}

export async function spiFirst() {
  await firstQuery(null);
}

export async function spiFirstOther() {
  await firstQuery("bench_other");
}

/**
 * SPI overhead: the same statements as the raw-driver peers (peers/sql.mjs). The report file's first line,
 * written by the bench, is the pause before measuring ("pause MS"), the peers' too.
 */
export async function spiOverhead(selects) {
  const n = Number(selects);
  const pauseMs = Number(/^pause (\\d+)/.exec(readFileSync(BackgroundWorker.getExtra(), "utf8"))?.[1] ?? 3000);
  await BackgroundWorker.connectWorkerToSpi();
  await BackgroundWorker.transaction(() => Spi.run("SELECT 1"));
  // Let the spare pool settle (the launch that took this process forks its replacement) before measuring.
  await sleep(pauseMs);
  let t0 = performance.now();
  await BackgroundWorker.transaction(async () => {
    for (let i = 0; i < n; i++) await Spi.getOne("SELECT $1::int AS v", [i]);
  });
  const selectsMs = performance.now() - t0;
  t0 = performance.now();
  for (let i = 0; i < n / 10; i++) {
    await BackgroundWorker.transaction(() => Spi.run("INSERT INTO bench_tx (v) VALUES ($1)", [i]));
  }
  const transactionsMs = performance.now() - t0;
  out(JSON.stringify({ selectsMs, transactionsMs }));
}
`;

export interface Libraries {
  readonly extension: string;
  readonly workers: string;
  readonly idleTs: string;
  readonly idleJs: string;
}

export function writeLibraries(project: Project): Libraries {
  project.write("shared.js", SHARED);
  return {
    extension: project.write("extension.js", EXTENSION),
    workers: project.write("workers.js", WORKERS),
    idleTs: project.write("idle.ts", idleSource(true, "repeat")),
    idleJs: project.write("idle.js", idleSource(false, "repeat")),
  };
}

/** A library never seen before (new content at a new path): its first launch imports it. */
let fresh = 0;
export function freshIdleLibrary(project: Project, ts: boolean): string {
  fresh += 1;
  return project.write(`first/idle-${fresh}.${ts ? "ts" : "js"}`, idleSource(ts, `first ${fresh} ${Date.now()}`));
}

/** An extension registering `count` idle static workers (the scale measure). */
export function writeScaleExtension(project: Project, count: number): string {
  project.write("scale-workers.js", idleSource(false, "scale"));
  return project.write(
    "scale-extension.js",
    `import { BackgroundWorkerBuilder } from "bgworker";
export function _PG_init() {
  for (let i = 0; i < ${count}; i++) {
    new BackgroundWorkerBuilder("scale " + i).setLibrary("./scale-workers.js").setFunction("idle").load();
  }
}
`,
  );
}
