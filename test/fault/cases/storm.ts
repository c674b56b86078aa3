/**
 * Restart storms damped as SPEC §6 says while another worker runs undisturbed, and a worker that ignores
 * SIGTERM killed at the shutdown timeout.
 *
 * Both cases wait for outcomes (a number of exits, the postmaster's exit) with a generous deadline, then
 * check the rules on the postmaster's own timeline: its log records, in order, with their timestamps. How
 * many events fit in some wall-clock window depends on the machine's speed and is never asserted.
 */
import { connect } from "../../../src/control/client.js";
import type { LogRecord } from "../../../src/log.js";
import { DEFAULT_RESTART_BACKOFF, dampingDelay } from "../../../src/postmaster/rules.js";
import { startFaultPostmaster } from "../common.js";
import { Expectations, type FaultCase, type FaultScale, type Outcome } from "../harness.js";

/** How long a case waits for an outcome before it fails: far beyond what a slow, loaded machine needs. */
const DEADLINE_MS = 60_000;
/** A timer may fire a millisecond early by the log's clock; a restart after its delay never comes sooner than this. */
const CLOCK_SLACK_MS = 5;

const at = (record: LogRecord): number => Date.parse(record.time);
/** The postmaster's own lines about a worker (not what the worker printed). */
const own = (record: LogRecord, name: string): boolean => record.stream === undefined && record.worker?.name === name;
const EXITED = /^background worker "[^"]+" \(PID (\d+)\) (?:exited with exit code \d+|was terminated by signal \d+)/;
const DAMPED = /^background worker "[^"]+" failed (\d+) times in a row within (\d+) ms of starting; delaying its restart by (\d+) ms$/;

/** One exit of a worker and the damping the postmaster announced for it (before the next exit), from the log. */
interface ExitStep {
  readonly pid: number;
  readonly at: number;
  /** Index in the log, to order other records against this exit. */
  readonly index: number;
  readonly damped: { readonly failures: number; readonly ms: number; readonly at: number }[];
}

function exitSteps(records: readonly LogRecord[], name: string): ExitStep[] {
  const steps: { pid: number; at: number; index: number; damped: ExitStep["damped"][number][] }[] = [];
  records.forEach((record, index) => {
    if (!own(record, name)) return;
    const exit = EXITED.exec(record.message);
    if (exit !== null) {
      steps.push({ pid: Number(exit[1]), at: at(record), index, damped: [] });
      return;
    }
    const damped = DAMPED.exec(record.message);
    if (damped !== null) steps.at(-1)?.damped.push({ failures: Number(damped[1]), ms: Number(damped[3]), at: at(record) });
  });
  return steps;
}

async function runStorm(scale: FaultScale): Promise<Outcome> {
  const e = new Expectations();
  const { failures } = DEFAULT_RESTART_BACKOFF;
  // Exits examined: the undamped ones, then 4 (bounded) or 6 (full) damped delays, 100 ms doubled.
  const examined = failures + (scale.name === "full" ? 5 : 3);
  const pm = await startFaultPostmaster(
    [
      { name: "storm", function: "failFast", restartTimeMs: 0 },
      { name: "steady", function: "steady", restartTimeMs: 0 },
    ],
    ["--no-database"],
  );
  try {
    const [steadyStarted] = await pm.waitForEvents("started", 1, (event) => pm.records.some((r) => r.worker?.name === "steady" && r.worker.pid === event.pid));
    const steadyPid = steadyStarted!.pid;
    // Wait for the storm to have failed `examined` times, and for the postmaster's decision about the last
    // of those exits: from the fifth fast failure on, the damping line it logs with the exit.
    const steps = await pm.until(
      `${examined} exits of the storm worker, each with its restart decision`,
      () => {
        const all = exitSteps(pm.records, "storm");
        const last = all[examined - 1];
        if (last === undefined) return undefined;
        return last.damped.length > 0 ? all.slice(0, examined) : undefined;
      },
      DEADLINE_MS,
    );
    const lastExit = steps.at(-1)!;
    // The steady worker ran through the whole storm: it ticks after the last exit examined.
    await pm.until(
      "a tick of the steady worker after the storm's last exit examined",
      () => (pm.records.slice(lastExit.index + 1).some((r) => r.stream === "stdout" && r.worker?.pid === steadyPid && r.message.includes('"event":"tick"')) ? true : undefined),
      DEADLINE_MS,
    );
    const client = await connect(pm.socket);
    const rows = await client.status();
    await client.close();
    const storm = rows.find((r) => r.name === "storm");
    const steady = rows.find((r) => r.name === "steady");

    // SPEC §6 on the postmaster's timeline. Exit n (from 1) is the n-th fast failure in a row of a worker
    // that fails at once: before the fifth its restart time (0) is honoured, with no damping; from the fifth
    // on its restart waits dampingDelay(n), announced with the exit, and the next exit comes no sooner.
    const delays: number[] = [];
    let shortest = Infinity;
    steps.forEach((step, i) => {
      const n = i + 1;
      const next = steps[i + 1];
      if (n < failures) {
        e.expect(step.damped.length === 0, `exit ${n} (PID ${step.pid}) of the storm worker was damped (${JSON.stringify(step.damped)}): only the ${failures}th fast failure in a row may be`);
        return;
      }
      const expected = dampingDelay(n, DEFAULT_RESTART_BACKOFF);
      const [damped, ...more] = step.damped;
      if (damped === undefined || more.length > 0) {
        e.expect(false, `exit ${n} (PID ${step.pid}) of the storm worker: ${step.damped.length} damping lines, SPEC §6 says one (${expected} ms)`);
        return;
      }
      delays.push(damped.ms);
      e.expect(damped.failures === n, `exit ${n} (PID ${step.pid}) announced as ${damped.failures} fast failures in a row`);
      e.expect(damped.ms === expected, `exit ${n} (PID ${step.pid}): restart delayed by ${damped.ms} ms, SPEC §6 says ${expected} ms`);
      if (next === undefined) return;
      const gap = next.at - damped.at;
      shortest = Math.min(shortest, gap / damped.ms);
      e.expect(gap >= damped.ms - CLOCK_SLACK_MS, `after a damped delay of ${damped.ms} ms (exit ${n}) the next exit (PID ${next.pid}) came ${gap} ms later`);
    });
    const undamped = steps.slice(1, failures).map((step, i) => step.at - steps[i]!.at);
    e.figure("storm exits examined", `${steps.length} (${failures - 1} undamped, exit-to-exit ${undamped.join(", ")} ms)`);
    e.figure("damped delays", delays.join(", ") + " ms");
    e.figure("gaps vs damping", Number.isFinite(shortest) ? `every gap >= ${shortest.toFixed(2)} x the damped delay` : "n/a");

    // The status agrees: in backoff, the delay is the one due for the next exit's count (restarts + 1).
    e.expect(storm?.state === "backoff" || storm?.state === "starting" || storm?.state === "running", `storm row is ${String(storm?.state)}`);
    if (storm?.state === "backoff") {
      const due = dampingDelay(storm.restarts + 1, DEFAULT_RESTART_BACKOFF);
      e.expect(storm.backoffMs === due, `storm row in backoff ${String(storm.backoffMs)} ms after ${storm.restarts} restarts, SPEC §6 says ${due} ms`);
    }
    e.expect((storm?.restarts ?? -1) >= examined - 1, `storm row shows ${String(storm?.restarts)} restarts after ${examined} exits`);
    e.figure("storm row", `${String(storm?.state)}, backoff ${String(storm?.backoffMs)} ms, restarts ${String(storm?.restarts)}`);

    // The steady worker: never exited, same pid, no restart, still running, and ticking after the storm.
    const steadyExits = pm.records.filter((r) => own(r, "steady") && EXITED.test(r.message));
    e.expect(steadyExits.length === 0, `the steady worker exited: ${steadyExits.map((r) => r.message).join("; ")}`);
    e.expect(steady?.pid === steadyPid && steady.restarts === 0 && steady.state === "running", `steady worker disturbed: ${JSON.stringify(steady)}`);
    e.figure("steady worker", "same pid, 0 restarts, ticking after the storm's last exit examined");
  } catch (error) {
    e.expect(false, `aborted: ${error instanceof Error ? error.message.split("\n")[0] : String(error)}`);
  } finally {
    await pm.close().catch((error: Error) => e.expect(false, error.message));
  }
  return e.outcome();
}

async function runShutdownTimeout(): Promise<Outcome> {
  const e = new Expectations();
  const timeoutMs = 1_500;
  const pm = await startFaultPostmaster(
    [
      { name: "deaf", function: "ignoreTerm" },
      { name: "steady", function: "steady" },
    ],
    ["--no-database", "--shutdown-timeout", String(timeoutMs)],
  );
  try {
    await pm.waitForEvents("started", 2);
    pm.signal("SIGINT");
    let timer: NodeJS.Timeout | undefined;
    const exited = await Promise.race([
      pm.exited,
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`the postmaster did not exit within ${DEADLINE_MS} ms of SIGINT`)), DEADLINE_MS))),
    ]).finally(() => clearTimeout(timer));
    // On the postmaster's clock: from the shutdown request it logged to the SIGKILL exit of the deaf worker.
    const requested = pm.records.find((r) => r.stream === undefined && r.message === "received fast shutdown request");
    const killed = pm.records.find((r) => own(r, "deaf") && /^background worker "deaf" \(PID \d+\) was terminated by signal 9/.test(r.message));
    const deafExits = pm.records.filter((r) => own(r, "deaf") && EXITED.test(r.message));
    const after = killed === undefined || requested === undefined ? NaN : at(killed) - at(requested);
    e.expect(exited.code === 0, `postmaster exit ${JSON.stringify(exited)}`);
    e.expect(requested !== undefined, "no \"received fast shutdown request\" line");
    e.expect(killed !== undefined, "the worker that ignores SIGTERM was not SIGKILLed");
    e.expect(deafExits.length === 1, `the deaf worker exited ${deafExits.length} times: ${deafExits.map((r) => r.message).join("; ")}`);
    // SIGKILL comes at the timeout, not before; how much later depends on the machine and is not a rule.
    e.expect(!(after < timeoutMs - CLOCK_SLACK_MS), `SIGKILL ${after} ms after the shutdown request, before the ${timeoutMs} ms timeout`);
    e.expect(pm.events("loop-ended").length === 1, "the well-behaved worker did not end its loop on SIGTERM");
    const steadyExit = pm.records.find((r) => own(r, "steady") && EXITED.test(r.message));
    e.expect(steadyExit !== undefined && /exited with exit code 0$/.test(steadyExit.message), `the well-behaved worker's exit: ${steadyExit?.message ?? "none logged"}`);
    e.figure("SIGKILL after", `${after} ms on the postmaster's clock (timeout ${timeoutMs} ms)`);
  } catch (error) {
    e.expect(false, `aborted: ${error instanceof Error ? error.message.split("\n")[0] : String(error)}`);
  } finally {
    await pm.close().catch((error: Error) => e.expect(false, error.message));
  }
  return e.outcome();
}

export const storm: FaultCase = {
  id: "storm",
  group: "storm",
  title: "a worker failing at once with restart time 0, beside a steady worker",
  bounded: true,
  run: runStorm,
};

export const shutdownTimeout: FaultCase = {
  id: "shutdown-timeout",
  group: "shutdown",
  title: "fast shutdown with a worker that ignores SIGTERM",
  bounded: true,
  run: runShutdownTimeout,
};
