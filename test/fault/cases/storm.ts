/**
 * Restart storms damped as SPEC §6 says while another worker runs undisturbed, and a worker that ignores
 * SIGTERM killed at the shutdown timeout.
 */
import { connect } from "../../../src/control/client.js";
import { DEFAULT_RESTART_BACKOFF, dampingDelay } from "../../../src/postmaster/rules.js";
import { exitsOf, startFaultPostmaster } from "../common.js";
import { Expectations, sleep, type FaultCase, type FaultScale, type Outcome } from "../harness.js";

async function runStorm(scale: FaultScale): Promise<Outcome> {
  const e = new Expectations();
  const pm = await startFaultPostmaster(
    [
      { name: "storm", function: "failFast", restartTimeMs: 0 },
      { name: "steady", function: "steady", restartTimeMs: 0 },
    ],
    ["--no-database"],
  );
  try {
    const client = await connect(pm.socket);
    const [steadyStarted] = await pm.waitForEvents("started", 1, (event) => pm.records.some((r) => r.worker?.name === "steady" && r.worker.pid === event.pid));
    const seconds = scale.name === "full" ? 8 : 4;
    await sleep(seconds * 1_000);
    const rows = await client.status();
    const storm = rows.find((r) => r.name === "storm");
    const steady = rows.find((r) => r.name === "steady");
    await client.close();
    const exits = exitsOf(pm).filter((x) => x.name === "storm");
    // The machine announces each damped delay as it schedules it; the next exit can only come after it.
    const isExit = (message: string): boolean => /^background worker "storm" \(PID \d+\) exited/.test(message);
    const delays = pm.records.flatMap((r, index) => {
      const match = r.worker?.name === "storm" ? /delaying its restart by (\d+) ms$/.exec(r.message) : null;
      if (match === null) return [];
      // The next exit in the log is the restarted worker's.
      const next = pm.records.slice(index + 1).find((x) => isExit(x.message));
      return [{ ms: Number(match[1]), at: Date.parse(r.time), nextExitAt: next === undefined ? undefined : Date.parse(next.time) }];
    });
    // Restart time 0: without damping this would be hundreds of exits a second.
    e.figure("storm exits", `${exits.length} in ${seconds} s`);
    e.expect(exits.length >= DEFAULT_RESTART_BACKOFF.failures + 1, `only ${exits.length} storm exits: damping began too early`);
    e.expect(exits.length <= DEFAULT_RESTART_BACKOFF.failures + 12, `${exits.length} storm exits in ${seconds} s: not damped`);
    e.expect(delays.length > 0 && delays.length === exits.length - DEFAULT_RESTART_BACKOFF.failures + 1, `${delays.length} damped delays for ${exits.length} exits`);
    // The k-th fast failure (k from 5) is delayed by 100 ms doubled per failure after the fifth.
    let shortest = Infinity;
    delays.forEach((delay, i) => {
      const expected = dampingDelay(DEFAULT_RESTART_BACKOFF.failures + i, DEFAULT_RESTART_BACKOFF);
      e.expect(delay.ms === expected, `damped delay ${i + 1}: ${delay.ms} ms, SPEC §6 says ${expected} ms`);
      if (delay.nextExitAt === undefined) return;
      const gap = delay.nextExitAt - delay.at;
      shortest = Math.min(shortest, gap / delay.ms);
      e.expect(gap >= delay.ms - 5, `restart after a damped delay of ${delay.ms} ms came after ${gap} ms`);
    });
    e.figure("damped delays", delays.map((d) => d.ms).join(", ") + " ms");
    e.figure("gaps vs damping", Number.isFinite(shortest) ? `every gap >= ${shortest.toFixed(2)} x the damped delay` : "n/a");
    e.expect(storm?.state === "backoff" || storm?.state === "starting" || storm?.state === "running", `storm row is ${String(storm?.state)}`);
    e.figure("storm row", `${String(storm?.state)}, backoff ${String(storm?.backoffMs)} ms, restarts ${String(storm?.restarts)}`);
    e.expect(steady?.pid === steadyStarted?.pid && steady?.restarts === 0 && steady.state === "running", `steady worker disturbed: ${JSON.stringify(steady)}`);
    const ticks = pm.events("tick").filter((t) => t.pid === steadyStarted?.pid);
    const lastTick = Math.max(...ticks.map((t) => Number(t.ticks)));
    e.figure("steady worker", `same pid, 0 restarts, ${lastTick} latch timeouts of 50 ms`);
    e.expect(lastTick >= (seconds * 1_000) / 50 / 4, `steady worker ticked only ${lastTick} times`);
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
    const asked = Date.now();
    pm.signal("SIGINT");
    const exited = await pm.exited;
    const killed = pm.records.find((r) => /^background worker "deaf" \(PID \d+\) was terminated by signal 9/.test(r.message));
    const after = killed === undefined ? NaN : Date.parse(killed.time) - asked;
    e.expect(exited.code === 0, `postmaster exit ${JSON.stringify(exited)}`);
    e.expect(killed !== undefined, "the worker that ignores SIGTERM was not SIGKILLed");
    e.expect(after >= timeoutMs - 50 && after < timeoutMs + 5_000, `SIGKILL ${after} ms after the shutdown request, timeout ${timeoutMs} ms`);
    e.expect(pm.events("loop-ended").length === 1, "the well-behaved worker did not end its loop on SIGTERM");
    e.figure("SIGKILL after", `${after} ms (timeout ${timeoutMs} ms)`);
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
