/**
 * Signals without a meaning in bgworker (SIGUSR1, SIGUSR2, SIGPIPE) reach the postmaster, a worker and a
 * spare runner: none of them dies or opens Node's inspector; `--inspect` given on purpose still works.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, readlinkSync } from "node:fs";
import { constants, tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { IGNORED_SIGNALS } from "../../src/runtime/signals.js";
import { alive, CLI, eventually, processesIn, RunningPostmaster, startPostmaster, TEST_EXTENSION, waitGone } from "../helpers/postmaster.js";

/** TCP ports on which `pid` listens (from /proc: its socket inodes matched with listening sockets). */
function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (match !== null) inodes.add(match[1]!);
    } catch {
      // Closed meanwhile.
    }
  }
  const ports: number[] = [];
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const line of readFileSync(table, "utf8").split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      // local_address is fields[1] (ADDR:PORT in hex), st is fields[3] (0A = LISTEN), inode is fields[9].
      if (fields[3] === "0A" && inodes.has(fields[9] ?? "")) ports.push(parseInt(fields[1]!.split(":")[1]!, 16));
    }
  }
  return ports;
}

const settle = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Whether `pid` has a handler installed for SIGUSR2 (its bit in /proc's SigCgt). A runner forked a moment ago
 * is still booting Node, which resets every signal to its default before any JavaScript runs; bgworker's own
 * first line installs the handlers. The test signals only processes that have got that far: every signal it
 * sends is caught or ignored (its bit in /proc's SigCgt or SigIgn), however slowly the process boots.
 */
function handlesAll(pid: number): boolean {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return false;
  }
  const mask = (field: string): bigint => BigInt(`0x${status.split("\n").find((l) => l.startsWith(field))?.slice(field.length).trim() ?? "0"}`);
  const handled = mask("SigCgt:") | mask("SigIgn:");
  return IGNORED_SIGNALS.every((signal) => (handled & (1n << BigInt(constants.signals[signal] - 1))) !== 0n);
}

/** The direct children of `pid`, from /proc. */
function childrenOf(pid: number): number[] {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
}

/**
 * Whether `pid` runs the runner's bootstrap: it has been through exec. A child caught between fork and exec
 * still holds the postmaster's handlers (its SigCgt lists every signal sent), yet exec resets them and Node's
 * boot follows with the default actions: signalled then, it would die for a reason no user can meet.
 */
function execedRunner(pid: number): boolean {
  try {
    return /runtime\/bootstrap\.[jt]s\0/.test(readFileSync(`/proc/${pid}/cmdline`, "utf8"));
  } catch {
    return false;
  }
}

/** Whether `pid` has no signal pending (its SigPnd and ShdPnd in /proc): every signal sent was delivered. */
function nothingPending(pid: number): boolean {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return true; // gone: the assertions after the window say so
  }
  return ["SigPnd:", "ShdPnd:"].every((field) => BigInt(`0x${status.split("\n").find((l) => l.startsWith(field))!.slice(field.length).trim()}`) === 0n);
}

describe("signals without a meaning", () => {
  it("SIGUSR1, SIGUSR2, SIGPIPE and the other ignored signals leave the postmaster, its workers and its spares running, with no inspector", async () => {
    const pm = await startPostmaster({
      workers: [
        { name: "plain", function: "sleepForever" },
        { name: "looper", function: "latchLoop" },
      ],
    });
    try {
      await pm.waitForEvents("started", 2);
      const workers = [...pm.workerPids()];
      assert.equal(workers.length, 2);
      // The pool refills at the machine's pace: wait for a spare. Only the postmaster's own children are
      // targets (workers and spares), not processes they start (such as a TypeScript loader's helper).
      const spares = await eventually("a spare runner", async () => {
        const found = childrenOf(pm.pid).filter((pid) => !workers.includes(pid) && execedRunner(pid));
        return found.length >= 1 ? found : undefined;
      }, 60_000);
      const targets = [pm.pid, ...workers, ...spares];
      await eventually("every process handling every signal sent (past Node's boot)", async () => (targets.every(handlesAll) ? true : undefined), 60_000);
      for (const signal of IGNORED_SIGNALS) {
        for (const pid of targets) process.kill(pid, signal);
      }
      // Delivered first (nothing pending for any target, however slow the machine), then a window: Node opens
      // the inspector within milliseconds of handling SIGUSR1; give it ample time to show it would have.
      await eventually("every signal delivered", async () => (targets.every(nothingPending) ? true : undefined), 60_000);
      await settle(1_500);
      for (const pid of targets) {
        assert.ok(alive(pid), `pid ${pid} survived ${IGNORED_SIGNALS.join(", ")}`);
        assert.deepEqual(listeningPorts(pid), [], `pid ${pid} listens on no TCP port (no inspector)`);
      }
      assert.equal(pm.logs(/Debugger listening|inspector/i).length + pm.stderrText.filter((l) => /Debugger listening/.test(l)).length, 0);
      assert.equal(pm.logs(/exited|terminated by signal/).length, 0, "no worker exited");
      assert.equal(pm.events("woke").length, 0, "an attached worker's latch is not set by these signals");
    } finally {
      await pm.close();
    }
  });

  it("SIGPWR and SIGXCPU are a fast shutdown: the workers are stopped and the postmaster exits 0", async () => {
    for (const signal of ["SIGPWR", "SIGXCPU"] as const) {
      const pm = await startPostmaster({ workers: [{ name: "plain", function: "sleepForever" }] });
      try {
        await pm.waitForEvents("started", 1);
        const workers = [...pm.workerPids()];
        process.kill(pm.pid, signal);
        const { code } = await pm.exited;
        assert.equal(code, 0, `${signal}: exit status`);
        assert.equal(pm.logs(/received fast shutdown request/).length, 1, `${signal}: logged as a fast shutdown`);
        assert.deepEqual(await waitGone(workers), [], `${signal}: no worker left`);
      } finally {
        await pm.close();
      }
    }
  });

  it("--inspect given on purpose still opens the postmaster's inspector", async () => {
    const dir = mkdtempSync(join(tmpdir(), "bgw-test-"));
    const child = spawn(
      process.execPath,
      ["--inspect=127.0.0.1:0", CLI, "start", TEST_EXTENSION, "--no-database", "--log-format", "json", "--socket", join(dir, "bgworker.sock")],
      { cwd: dir, env: { ...process.env, BGW_TEST_WORKERS: "[]" }, stdio: ["ignore", "pipe", "pipe"] },
    );
    const pm = new RunningPostmaster(child, dir);
    try {
      const line = await pm.until("the inspector's line", () => pm.stderrText.find((l) => /^Debugger listening on ws:\/\/127\.0\.0\.1:\d+\//.test(l)));
      const port = Number(/:(\d+)\//.exec(line)![1]);
      await pm.until("ready", () => (pm.stdout.includes("ready") ? true : undefined));
      assert.ok(listeningPorts(pm.pid).includes(port), `the postmaster listens on the inspector's port ${port}`);
      // Its runners are forked without the flag: only the process asked for is debuggable.
      for (const pid of processesIn(dir).filter((p) => p !== pm.pid)) assert.deepEqual(listeningPorts(pid), [], `runner ${pid} has no inspector`);
    } finally {
      await pm.close();
    }
  });
});
