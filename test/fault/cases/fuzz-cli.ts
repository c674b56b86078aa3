/**
 * Fuzzing the `bgworker` command line with a fixed seed, against a running postmaster: random commands,
 * options and values, every command included. Commands that change or read something always carry one
 * invalid argument (a usage error), so they must be refused before acting: exit status 2 and one
 * `bgworker: ... (see "bgworker COMMAND --help")` line. Then well-formed commands with hostile targets
 * (a `restart` of the postmaster's own pid, of a type or handle that names nothing, through a socket nobody
 * serves) must fail with exit status 1 and one line. Every run exits 0, 1 or 2 and never prints a stack;
 * afterwards the postmaster's status (pids, states, restart counts) and the files of its directory are
 * unchanged, and its log shows no restart and no reload.
 */
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { connect } from "../../../src/control/client.js";
import type { WorkerStatusRow } from "../../../src/status.js";
import { CLI, processesIn, type RunningPostmaster } from "../../helpers/postmaster.js";
import { join, startFaultPostmaster } from "../common.js";
import { Expectations, Rng, type FaultCase, type FaultScale, type Outcome } from "../harness.js";

const WORDS = [
  "", "-", "--", "-x", "--=", "=", "x", "0", "-1", "1.5", "1e3", "NaN", "null", "true", "123n", "-5n", "never", "😀", "é".repeat(80),
  "a".repeat(300), "\u0007", "$(id)", "`id`", "../../etc/passwd", "/nonexistent", "bgw1:x:0:1", "bgw1:::", "smart", "fast", "immediate",
  "json", "text", "postmaster", "consistent", "recovery-finished", "systemd",
];
const START_OPTIONS = ["--database", "--pgdata", "--no-database", "--max-worker-processes", "--shutdown-timeout", "--log-format", "--socket"];
const OPTIONS: Readonly<Record<string, readonly string[]>> = {
  start: START_OPTIONS,
  launch: ["--library", "--function", "--name", "--type", "--arg", "--extra", "--spi", "--shmem", "--start-time", "--restart-time", "--wait", "--json"],
  terminate: ["--wait"],
  stop: ["--mode", "--no-wait", "--timeout"],
  status: ["--json"],
  reload: ["--socket"],
  restart: ["--socket"],
  logs: ["-f", "--follow", "-n", "--lines", "--worker", "--json", "--log-file"],
  startup: [...START_OPTIONS, "--log-file", "--http"],
};
/** Options that take no value: never followed by one, and never mistaken for one that eats the next argument. */
const FLAGS = new Set(["--no-database", "--spi", "--shmem", "--wait", "--json", "--no-wait", "-f", "--follow", "-d", "--daemon"]);
/** Positionals a command is given besides random words: real targets, so that only the poison stops them. */
const TARGETS: Readonly<Record<string, readonly string[]>> = {
  restart: ["steady", "steady", "bgw1:x:0:1", "1"],
  terminate: ["bgw1:x:0:1"],
  startup: ["ext.ts"],
};
/** One argument (or option and value) each command must refuse before acting, with exit status 2. */
const POISON: Readonly<Record<string, readonly string[][]>> = {
  start: [["--bogus"], ["--log-format", "xml"], ["--max-worker-processes", "-1"], ["--shutdown-timeout", "1.5"], ["--database", "postgres://x@h/db", "--no-database"], ["--database", "not a url", "--pgdata", "/x"]],
  launch: [["--bogus"], ["--arg", "text"], ["--restart-time", "-5"], ["--start-time", "soon"], ["--extra", "e".repeat(129)], ["--arg", "1.5n"], ["--name", "n".repeat(96)]],
  terminate: [["--bogus"], ["abc"], ["-1"], ["1.5"], ["bgw1:::"], ["0"], ["1", "2"]],
  stop: [["--bogus"], ["--mode", "gentle"], ["--timeout", "abc"], ["--mode", ""], ["extra-argument"]],
  reload: [["--bogus"], ["now"], ["steady"], ["-1"], ["--socket="], ["--socket", ""], ["--json"]],
  restart: [
    ["--bogus"], ["steady", "steady"], ["steady", "--all"], ["bgw1:::"], ["bgw1:x:-1:0"], ["bgw1:x:0:1:2"], ["-1"], ["--socket="],
    ["--socket", ""], ["--wait"], ["--type", "steady"],
  ],
  logs: [
    ["--bogus"], ["-n", "abc"], ["-n", "-1"], ["--lines", "1.5"], ["--lines=1e3"], ["-n", "😀"], ["--worker", ""], ["--worker="], ["steady"],
    ["../../etc/passwd"], ["-f", "extra"], ["--log-file=/etc/passwd", "-n", "x"], ["--since", "1h"],
  ],
  startup: [
    ["--bogus"], ["--http-token", "secret"], ["--http-token=secret"], ["--database", "postgres://u:secret@h/db"],
    ["--database=postgres://u:secret@h/db"], ["-d"], ["--daemon"], ["--log-format", "xml"], ["--max-worker-processes", "-1"],
    ["--shutdown-timeout", "1.5"], ["--log-files", "0"], ["--log-rotation-size", "huge"],
  ],
};
/** Commands in the order the first runs take them, so that even the bounded form runs each one. */
const COMMANDS = ["start", "launch", "terminate", "stop", "status", "reload", "restart", "logs", "startup"] as const;
/** Spellings of one option: a poison's option is never given again in the random part, which could override it. */
const SAME: Readonly<Record<string, string>> = { "-n": "--lines", "-f": "--follow", "-d": "--daemon" };

function fingerprint(rows: readonly WorkerStatusRow[]): string {
  return JSON.stringify(rows.map((r) => [r.slot, r.name, r.pid, r.state, r.restarts]));
}

/** `--lines=5` -> `--lines`; `-n` -> `--lines`; not an option -> undefined. */
function optionName(token: string | undefined): string | undefined {
  if (token === undefined || !token.startsWith("-") || token === "-" || token === "--") return undefined;
  const name = token.split("=")[0]!;
  return SAME[name] ?? name;
}

function argumentsFor(rng: Rng, index: number): { command: string; args: string[]; poisoned: boolean } {
  const command = index < COMMANDS.length ? COMMANDS[index]! : rng.pick([...COMMANDS, "status", rng.pick(WORDS)]);
  const options = OPTIONS[command] ?? [];
  const targets = TARGETS[command] ?? [];
  // Groups of arguments: an option with its value stays together, so that a poison never becomes a value.
  const groups: string[][] = [];
  if (command === "startup" && rng.next() < 0.85) groups.push(["systemd"]);
  for (let n = rng.int(0, 5); n > 0; n--) {
    const roll = rng.next();
    if (roll < 0.5 && options.length > 0) {
      const option = rng.pick(options);
      groups.push(FLAGS.has(option) || rng.next() < 0.2 ? [option] : [option, rng.pick(WORDS)]);
    } else if (roll < 0.6) {
      groups.push([`${rng.pick(options.length > 0 ? options : ["--x"])}=${rng.pick(WORDS)}`]);
    } else if (roll < 0.75 && targets.length > 0) {
      groups.push([rng.pick(targets)]);
    } else {
      groups.push([rng.pick(WORDS)]);
    }
  }
  const poisons = POISON[command];
  if (poisons === undefined) return { command, args: [command, ...groups.flat()], poisoned: false };
  const poison = rng.pick(poisons);
  // Given again later, the poison's option would be overridden: the random part leaves it out.
  const poisoned = new Set(poison.map(optionName).filter((name) => name !== undefined));
  const kept = groups.filter((g) => !poisoned.has(optionName(g[0]) ?? ""));
  // Before any "--" (after it the poison would be a positional), and never right after an option that is
  // still waiting for its value.
  const end = kept.findIndex((g) => g.includes("--"));
  const places: number[] = [];
  for (let i = 0; i <= (end < 0 ? kept.length : end); i++) {
    const previous = kept[i - 1];
    const waiting = previous?.length === 1 && optionName(previous[0]) !== undefined && !previous[0]!.includes("=") && !FLAGS.has(previous[0]!);
    if (!waiting) places.push(i);
  }
  kept.splice(rng.pick(places), 0, poison);
  // `--help` anywhere makes any command print its help and succeed; a poisoned run must not have it.
  const args = [command, ...kept.flat()].filter((a) => a !== "--help" && a !== "-h");
  return { command, args, poisoned: true };
}

/** Well-formed commands that name nothing real, or a postmaster that is not there: exit status 1, one line. */
function hostileTargets(pm: RunningPostmaster): string[][] {
  const nobody = join(pm.dir, "nobody", "bgworker.sock");
  const postmaster = pm.child.pid ?? process.pid;
  return [
    ["restart", "no-such-type"],
    ["restart", "1.5"],
    ["restart", "$(id)"],
    ["restart", String(postmaster)],
    ["restart", String(process.pid)],
    ["restart", "4194305"],
    ["restart", "99999999999999999999"],
    ["restart", `bgw1:${postmaster.toString(36)}.0:0:0`],
    ["restart", "bgw1:x:0:1"],
    ["restart", "STEADY"],
    ["restart", "steady", "--socket", nobody],
    ["reload", "--socket", nobody],
    ["reload", `--socket=${pm.dir}`],
    ["logs", "--log-file", pm.dir],
  ];
}

/** Every path under `dir`, for "nothing was created or removed". */
function tree(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).map(String).sort();
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
    const filesBefore = tree(pm.dir);
    const processesBefore = processesIn(pm.dir).length;
    const cases = Math.max(16, Math.round(scale.fuzzCases / 8));
    const codes = new Map<number | null, number>();
    const perCommand = new Map<string, number>();
    const problems: string[] = [];
    const check = (args: string[], result: { code: number | null; stderr: string }, expected: number | undefined): void => {
      codes.set(result.code, (codes.get(result.code) ?? 0) + 1);
      const lines = result.stderr.split("\n").filter((l) => l.length > 0);
      const shown = JSON.stringify(args).slice(0, 160);
      if (result.code === null || result.code > 2) problems.push(`${shown}: exit ${String(result.code)}`);
      else if (expected !== undefined && result.code !== expected) problems.push(`${shown}: exit ${result.code}, not ${expected}`);
      if (result.code !== 0 && (lines.length !== 1 || !lines[0]!.startsWith("bgworker: "))) {
        problems.push(`${shown}: stderr is not one "bgworker: " line: ${JSON.stringify(result.stderr.slice(0, 300))}`);
      }
      if (result.code === 2 && !/\(see "bgworker[^"]* --help"\)$/.test(lines[0] ?? "")) problems.push(`${shown}: a usage error without its pointer to --help: ${lines[0]}`);
      if (/\n\s+at .+:\d+:\d+\)?/.test(result.stderr)) problems.push(`${shown}: a stack trace`);
    };
    const all = Array.from({ length: cases }, (_, i) => argumentsFor(rng, i));
    // Two at a time: the machine is shared.
    for (let i = 0; i < all.length; i += 2) {
      await Promise.all(
        all.slice(i, i + 2).map(async ({ command, args, poisoned }) => {
          perCommand.set(command, (perCommand.get(command) ?? 0) + 1);
          check(args, await runCli(args, pm!.dir, pm!.socket), poisoned ? 2 : undefined);
        }),
      );
    }
    const hostile = hostileTargets(pm);
    for (const args of hostile) {
      check(args, await runCli(args, pm.dir, pm.socket), 1);
      const now = fingerprint(await client.status());
      if (now !== before) problems.push(`${JSON.stringify(args)}: status changed: ${now}`);
    }
    const after = fingerprint(await client.status());
    await client.close();
    e.expect(after === before, `status changed:\n${before}\n${after}`);
    e.expect(pm.child.exitCode === null, "the postmaster is gone");
    e.expect(processesIn(pm.dir).length <= processesBefore, "a command left a process behind");
    const filesAfter = tree(pm.dir);
    e.expect(JSON.stringify(filesAfter) === JSON.stringify(filesBefore), `files changed in the postmaster's directory: ${filesAfter.filter((f) => !filesBefore.includes(f)).join(", ") || "some removed"}`);
    const acted = pm.logs(/at administrator request|reloading configuration files/).map((r) => r.message);
    e.expect(acted.length === 0, `a refused command acted: ${acted.slice(0, 3).join("; ")}`);
    for (const problem of problems.slice(0, 8)) e.expect(false, problem);
    e.expect(problems.length === 0, `${problems.length} runs without a clear outcome`);
    e.figure("runs", `${cases + hostile.length} (exit ${[...codes.entries()].sort().map(([c, n]) => `${String(c)}: ${n}`).join(", ")})`);
    e.figure("commands", COMMANDS.map((c) => `${c} ${perCommand.get(c) ?? 0}`).join(", "));
    e.figure("hostile targets", `${hostile.length} refused with exit 1 (restart ${hostile.filter((a) => a[0] === "restart").length})`);
    e.figure("afterwards", "status and restart counts unchanged, no restart or reload logged, postmaster serving");
    log(`fuzz-cli: ${cases} random runs, ${hostile.length} hostile targets`);
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
