/**
 * Fuzzing the `bgworker` command line with a fixed seed, against a running postmaster: random commands,
 * options and values. Commands that change something always carry one invalid argument, so that they must
 * be refused before acting. Every run exits 0, 1 or 2 with at most one `bgworker: ...` line on stderr
 * (never a stack), and the postmaster's status is unchanged afterwards.
 */
import { spawn } from "node:child_process";
import { connect } from "../../../src/control/client.js";
import type { WorkerStatusRow } from "../../../src/status.js";
import { CLI, processesIn, type RunningPostmaster } from "../../helpers/postmaster.js";
import { startFaultPostmaster } from "../common.js";
import { Expectations, Rng, type FaultCase, type FaultScale, type Outcome } from "../harness.js";

const WORDS = [
  "", "-", "--", "-x", "--=", "=", "x", "0", "-1", "1.5", "1e3", "NaN", "null", "true", "123n", "-5n", "never", "😀", "é".repeat(80),
  "a".repeat(300), "\u0007", "$(id)", "`id`", "../../etc/passwd", "/nonexistent", "bgw1:x:0:1", "bgw1:::", "smart", "fast", "immediate",
  "json", "text", "postmaster", "consistent", "recovery-finished",
];
const OPTIONS: Readonly<Record<string, readonly string[]>> = {
  start: ["--database", "--pgdata", "--no-database", "--max-worker-processes", "--shutdown-timeout", "--log-format", "--socket"],
  launch: ["--library", "--function", "--name", "--type", "--arg", "--extra", "--spi", "--shmem", "--start-time", "--restart-time", "--wait", "--json"],
  terminate: ["--wait"],
  stop: ["--mode", "--no-wait", "--timeout"],
  status: ["--json"],
  reload: [],
};
/** One argument each command must refuse before acting. */
const POISON: Readonly<Record<string, readonly string[][]>> = {
  start: [["--bogus"], ["--log-format", "xml"], ["--max-worker-processes", "-1"], ["--shutdown-timeout", "1.5"], ["--database", "postgres://x@h/db", "--no-database"], ["--database", "not a url", "--pgdata", "/x"]],
  launch: [["--bogus"], ["--arg", "text"], ["--restart-time", "-5"], ["--start-time", "soon"], ["--extra", "e".repeat(129)], ["--arg", "1.5n"], ["--name", "n".repeat(96)]],
  terminate: [["--bogus"], ["abc"], ["-1"], ["1.5"], ["bgw1:::"], ["0"], ["1", "2"]],
  stop: [["--bogus"], ["--mode", "gentle"], ["--timeout", "abc"], ["--mode", ""], ["extra-argument"]],
};

function fingerprint(rows: readonly WorkerStatusRow[]): string {
  return JSON.stringify(rows.map((r) => [r.slot, r.name, r.pid, r.state, r.restarts]));
}

function argumentsFor(rng: Rng): { args: string[]; poisoned: boolean } {
  const command = rng.pick(["start", "launch", "terminate", "stop", "status", "status", "reload", rng.pick(WORDS)]);
  const args: string[] = command === "" ? [] : [command];
  const options = OPTIONS[command] ?? [];
  for (let n = rng.int(0, 5); n > 0; n--) {
    const roll = rng.next();
    if (roll < 0.5 && options.length > 0) {
      args.push(rng.pick(options));
      if (rng.next() < 0.8) args.push(rng.pick(WORDS));
    } else if (roll < 0.6) {
      args.push(`${rng.pick(options.length > 0 ? options : ["--x"])}=${rng.pick(WORDS)}`);
    } else {
      args.push(rng.pick(WORDS));
    }
  }
  const poisons = POISON[command];
  if (poisons === undefined) return { args, poisoned: false };
  const poison = rng.pick(poisons);
  args.splice(rng.int(1, args.length), 0, ...poison);
  // `--help` anywhere makes any command print its help and succeed; a poisoned run must not have it.
  return { args: args.filter((a) => a !== "--help" && a !== "-h"), poisoned: true };
}

function runCli(args: string[], cwd: string, socket: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd, env: { ...process.env, BGWORKER_SOCKET: socket }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

async function run(scale: FaultScale, log: (line: string) => void): Promise<Outcome> {
  const e = new Expectations();
  const rng = new Rng(scale.seed ^ 0xc11);
  let pm: RunningPostmaster | undefined;
  try {
    pm = await startFaultPostmaster([{ name: "steady", function: "steady" }], ["--no-database"]);
    await pm.waitForEvents("started", 1);
    const client = await connect(pm.socket);
    const before = fingerprint(await client.status());
    const processesBefore = processesIn(pm.dir).length;
    const cases = Math.max(16, Math.round(scale.fuzzCases / 8));
    const codes = new Map<number | null, number>();
    const problems: string[] = [];
    const all = Array.from({ length: cases }, () => argumentsFor(rng));
    // Two at a time: the machine is shared.
    for (let i = 0; i < all.length; i += 2) {
      await Promise.all(
        all.slice(i, i + 2).map(async ({ args, poisoned }) => {
          const result = await runCli(args, pm!.dir, pm!.socket);
          codes.set(result.code, (codes.get(result.code) ?? 0) + 1);
          const lines = result.stderr.split("\n").filter((l) => l.length > 0);
          const shown = JSON.stringify(args).slice(0, 160);
          if (result.code === null || result.code > 2) problems.push(`${shown}: exit ${String(result.code)}`);
          if (poisoned && result.code === 0) problems.push(`${shown}: accepted an invalid argument`);
          if (result.code !== 0 && (lines.length !== 1 || !lines[0]!.startsWith("bgworker: "))) {
            problems.push(`${shown}: stderr is not one "bgworker: " line: ${JSON.stringify(result.stderr.slice(0, 300))}`);
          }
          if (/\n\s+at .+:\d+:\d+\)?/.test(result.stderr)) problems.push(`${shown}: a stack trace`);
        }),
      );
    }
    const after = fingerprint(await client.status());
    await client.close();
    e.expect(after === before, `status changed:\n${before}\n${after}`);
    e.expect(pm.child.exitCode === null, "the postmaster is gone");
    e.expect(processesIn(pm.dir).length <= processesBefore, "a command left a process behind");
    for (const problem of problems.slice(0, 8)) e.expect(false, problem);
    e.expect(problems.length === 0, `${problems.length} runs without a clear outcome`);
    e.figure("runs", `${cases} (exit ${[...codes.entries()].sort().map(([c, n]) => `${String(c)}: ${n}`).join(", ")})`);
    e.figure("afterwards", "status unchanged, postmaster serving");
    log(`fuzz-cli: ${cases} runs`);
  } catch (error) {
    e.expect(false, `aborted: ${error instanceof Error ? error.message.split("\n")[0] : String(error)}`);
  } finally {
    await pm?.close().catch((error: Error) => e.expect(false, error.message));
  }
  return e.outcome();
}

export const fuzzCli: FaultCase = {
  id: "fuzz-cli",
  group: "fuzz",
  title: "bgworker command line: random commands, options and values against a running postmaster",
  bounded: true,
  run,
};
