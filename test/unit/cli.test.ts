/**
 * The `bgworker` command as a child process (`node --import tsx src/cli/main.ts ...`): exit statuses, one-line
 * errors, and the commands against a control server whose postmaster is a small in-test double.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { whereToLook } from "../../src/cli/launch.js";
import type { ControlHandler } from "../../src/control/handler.js";
import { ControlServer } from "../../src/control/server.js";
import { decodeDatum, type WorkerDefinition } from "../../src/definition.js";
import { BackgroundWorkerStatus, NoFreeWorkerSlotError } from "../../src/errors.js";
import type { HandleRef, HandleState } from "../../src/handle-format.js";
import { Logger } from "../../src/log.js";
import { register } from "../../src/ops/registry.js";
import type { ShutdownMode, StatusReport } from "../../src/status.js";

const TSX = import.meta.resolve("tsx");
const MAIN = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the CLI asynchronously (the test process serves its socket meanwhile). */
function cli(args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", TSX, MAIN, ...args], { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Asserts a failure: the exit status, and exactly one stderr line matching `message`. */
function failed(run: Run, code: number, message: RegExp): void {
  assert.equal(run.code, code, `exit status (stderr: ${run.stderr})`);
  const lines = run.stderr.split("\n").filter((line) => line !== "");
  assert.equal(lines.length, 1, `one line on stderr, got: ${run.stderr}`);
  assert.match(lines[0] ?? "", message);
  assert.equal(run.stdout, "");
}

/** Workers start as soon as they are launched, with pid 5000 + slot; terminate stops them. */
class InstantPostmaster implements ControlHandler {
  readonly postmasterId = "pm-cli";
  readonly definitions: WorkerDefinition[] = [];
  readonly stops: ShutdownMode[] = [];
  reloads = 0;
  readonly terminated: Array<number | HandleRef> = [];
  readonly live = new Set<number>();
  onStop: (mode: ShutdownMode) => void = () => undefined;

  status(): StatusReport {
    return {
      postmaster: { pid: 4000, phase: "running", database: "none", uptimeMs: 65_000, shmemBytes: 0, maxWorkerProcesses: 2, spares: { count: 1, ready: 1, target: 1, max: 8, pssBytes: 9_437_184 }, shutdown: null },
      workers: this.definitions.map((definition, slot) => ({
        slot, name: definition.name, type: definition.type, pid: this.live.has(slot) ? 5000 + slot : null,
        state: this.live.has(slot) ? ("running" as const) : ("stopped" as const), startTime: "PostmasterStart" as const,
        restartTimeMs: definition.restartTimeMs, restarts: 0, lastExit: null, notifyPid: definition.notifyPid, kind: "dynamic" as const,
        spi: definition.spi, shmem: definition.shmem, backoffMs: null, handle: `bgw1:pm-cli:${slot}:1`,
      })),
    };
  }
  launch(definition: WorkerDefinition): HandleRef {
    if (this.definitions.length >= 2) throw new NoFreeWorkerSlotError("no free background worker slot (max_worker_processes = 2)");
    this.definitions.push(definition);
    // A function named "broken" never starts: its worker stops at once.
    if (definition.function !== "broken") this.live.add(this.definitions.length - 1);
    return { postmaster: this.postmasterId, slot: this.definitions.length - 1, generation: 1 };
  }
  state(ref: HandleRef): HandleState {
    return this.live.has(ref.slot) ? { status: BackgroundWorkerStatus.Started, pid: 5000 + ref.slot } : { status: BackgroundWorkerStatus.Stopped };
  }
  async waitForStartup(ref: HandleRef, callerPid: number): Promise<HandleState> {
    return this.definitions[ref.slot]?.notifyPid === callerPid ? this.state(ref) : { status: BackgroundWorkerStatus.Untracked };
  }
  async waitForShutdown(): Promise<HandleState> {
    return { status: BackgroundWorkerStatus.Untracked };
  }
  readonly restarted: unknown[] = [];
  restart(target: { pid: number } | { handle: HandleRef } | { type: string }): number {
    if ("type" in target && target.type === "nobody") throw new Error('no registered background worker of type "nobody"');
    this.restarted.push(target);
    return "type" in target ? 2 : 1;
  }
  terminate(target: number | HandleRef): void {
    const slot = typeof target === "number" ? target - 5000 : target.slot;
    if (typeof target === "number" && !this.live.has(slot)) throw new Error(`no background worker with pid ${target}`);
    this.terminated.push(target);
    // The worker takes a moment to exit, as a real one would.
    setTimeout(() => this.live.delete(slot), 100);
  }
  stop(mode: ShutdownMode): void {
    this.stops.push(mode);
    this.onStop(mode);
  }
  async reload(): Promise<void> {
    this.reloads += 1;
  }
  clientGone(): void {}
}

let root: string;
let cwd: string;

before(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "bgw-cli-"));
});
after(() => {
  fs.rmSync(root, { recursive: true, force: true });
});
beforeEach(() => {
  cwd = fs.mkdtempSync(path.join(root, "cwd-"));
});

describe("bgworker: usage and failures", () => {
  it("prints help and the version", async () => {
    const help = await cli(["--help"], cwd);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Usage: bgworker COMMAND/);
    const launchHelp = await cli(["launch", "--help"], cwd);
    assert.equal(launchHelp.code, 0);
    assert.match(launchHelp.stdout, /--restart-time MS/);
    const version = await cli(["--version"], cwd);
    assert.equal(version.code, 0);
    assert.match(version.stdout, /^bgworker \d+\.\d+\.\d+\n$/);
  });

  it("exits 2 with one line for usage errors, before trying to connect", async () => {
    const cases: Array<[string[], RegExp]> = [
      [[], /^bgworker: missing command: start, status, launch, terminate, stop, reload, logs, restart, startup or pg-install \(see "bgworker --help"\)$/],
      [["dance"], /^bgworker: unknown command "dance"/],
      [["status", "--bogus"], /^bgworker: unknown option --bogus \(see "bgworker status --help"\)$/],
      [["status", "extra"], /^bgworker: unexpected argument "extra"/],
      [["launch", "--function", "f"], /^bgworker: option --library is required/],
      [["launch", "--library", "x"], /^bgworker: option --function is required/],
      [["launch", "--library", "x", "--function", "f", "--arg", "hello"], /^bgworker: --arg "hello" is not a Datum/],
      [["launch", "--library", "x", "--function", "f", "--arg", "-5"], /^bgworker: option --arg needs a value \(for a value starting with "-", write --arg=VALUE\)/],
      [["launch", "--library", "x", "--function", "f", "--restart-time", "86400001"], /^bgworker: --restart-time: restart time 86400001 must be from 0 to 86400000 ms/],
      [["launch", "--library", "x", "--function", "f", "--start-time", "later"], /^bgworker: --start-time "later" must be/],
      [["launch", "--library", "x", "--function", "f", "--spi", "--start-time", "postmaster"], /cannot request database access with start time PostmasterStart/],
      [["launch", "--library", "x", "--function", "f", "--name", "x".repeat(96)], /^bgworker: --name: name .* must be at most 95 UTF-8 bytes/],
      [["launch", "--library", "x", "--function", "f", "--extra", "y".repeat(129)], /^bgworker: --extra: extra of 129 bytes must be at most 128 bytes/],
      [["terminate"], /^bgworker: missing PID or HANDLE/],
      [["terminate", "1", "2"], /^bgworker: unexpected argument "2"/],
      [["terminate", "worker-7"], /^bgworker: handle "worker-7" is not a background worker handle/],
      [["stop", "--mode", "gentle"], /^bgworker: --mode "gentle" must be smart, fast or immediate/],
      [["stop", "--timeout", "soon"], /^bgworker: --timeout "soon" must be a number of milliseconds/],
      [["status", "--socket", ""], /^bgworker: --socket must not be empty/],
    ];
    const runs = await Promise.all(cases.map(([args]) => cli(args, cwd)));
    runs.forEach((run, i) => failed(run, 2, cases[i]?.[1] ?? /never/));
  });

  it("exits 1 with one line naming the socket when no postmaster is running", async () => {
    const runs = await Promise.all([
      cli(["status"], cwd),
      cli(["launch", "--library", "./w.ts", "--function", "f"], cwd),
      cli(["terminate", "123"], cwd),
      cli(["stop", "--socket", "other.sock"], cwd),
    ]);
    const socket = path.join(cwd, ".bgworker", "bgworker.sock").replace(/[.]/g, "\\.");
    for (const run of runs.slice(0, 3)) failed(run, 1, new RegExp(`^bgworker: no postmaster running on ${socket}$`));
    failed(runs[3] as Run, 1, new RegExp(`^bgworker: no postmaster running on ${path.join(cwd, "other.sock").replace(/[.]/g, "\\.")}$`));
  });
});

describe("bgworker: commands against a postmaster", () => {
  let handler: InstantPostmaster;
  let server: ControlServer;

  beforeEach(async () => {
    handler = new InstantPostmaster();
    // The default socket of the CLI's working directory: no --socket needed.
    server = new ControlServer({ path: path.join(cwd, ".bgworker", "bgworker.sock"), handler, logger: new Logger({ sink: () => undefined }) });
    await server.listen();
  });
  afterEach(async () => {
    await server.close();
  });

  it("launches with every flag, resolving the library from the CLI's directory", async () => {
    const run = await cli(
      ["launch", "--library", "./lib/w.ts", "--function", "main", "--name", "n1", "--type", "t1", "--arg=-12n", "--extra", "hi",
        "--spi", "--shmem", "--start-time", "consistent", "--restart-time", "250"],
      cwd,
    );
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, "bgw1:pm-cli:0:1\n");
    const definition = handler.definitions[0];
    assert.ok(definition !== undefined);
    assert.equal(definition.library, path.join(cwd, "lib", "w.ts"));
    assert.deepEqual(
      { name: definition.name, type: definition.type, fn: definition.function, start: definition.startTime, restart: definition.restartTimeMs, spi: definition.spi, shmem: definition.shmem },
      { name: "n1", type: "t1", fn: "main", start: 1, restart: 250, spi: true, shmem: true },
    );
    assert.equal(decodeDatum(definition.argument), -12n);
    assert.equal(Buffer.from(definition.extra, "base64").toString(), "hi");
    assert.ok(definition.notifyPid > 0 && definition.notifyPid !== process.pid, "the CLI process is the notify pid");
  });

  it("passes each --arg form with its type, and defaults the name to the function", async () => {
    const forms: Array<[string, unknown]> = [["123", 123], ["true", true]];
    for (const [text] of forms) {
      const run = await cli(["launch", "--library", "pkg", "--function", "fn", "--arg", text], cwd);
      assert.equal(run.code, 0, run.stderr);
    }
    assert.deepEqual(handler.definitions.map((d) => decodeDatum(d.argument)), forms.map(([, value]) => value));
    assert.deepEqual(handler.definitions.map((d) => [d.name, d.library, d.startTime, d.restartTimeMs]), [["fn", "pkg", 0, null], ["fn", "pkg", 0, null]]);
    const full = await cli(["launch", "--library", "pkg", "--function", "fn"], cwd);
    failed(full, 1, /^bgworker: no free background worker slot \(max_worker_processes = 2\)$/);
  });

  it("--wait prints the pid, --json prints both", async () => {
    const run = await cli(["launch", "--library", "pkg", "--function", "fn", "--wait"], cwd);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, "5000\n");
    const json = await cli(["launch", "--library", "pkg", "--function", "fn", "--wait", "--json"], cwd);
    assert.deepEqual(JSON.parse(json.stdout), { handle: "bgw1:pm-cli:1:1", pid: 5001 });
  });

  it("--wait answers a worker that did not start with the logs command that shows its lines", async () => {
    // The postmaster's registry entry (`status --all`'s) names its log file; `logs` from here would not find it.
    const runtime = fs.mkdtempSync(path.join(root, "run-"));
    const logFile = path.join(root, "srv app", ".bgworker", "log", "bgworker.log");
    const unregister = register(
      { pid: process.pid, cwd: path.join(root, "srv app"), socket: null, logFile, http: null, extensions: [], startedAt: new Date().toISOString() },
      path.join(runtime, "bgworker"),
    );
    try {
      const run = await cli(["launch", "--library", "pkg", "--function", "broken", "--name", "b1", "--type", "ingest", "--wait"], cwd, {
        ...process.env,
        XDG_RUNTIME_DIR: runtime,
      });
      failed(run, 1, /^bgworker: background worker "b1" \(bgw1:pm-cli:0:1\) did not start: it is Stopped \(see `bgworker logs --worker ingest --log-file '.*\/srv app\/\.bgworker\/log\/bgworker\.log'`\)$/);
    } finally {
      unregister();
    }
    const unknown = await cli(["launch", "--library", "pkg", "--function", "broken", "--wait"], cwd, { ...process.env, XDG_RUNTIME_DIR: runtime });
    failed(unknown, 1, /^bgworker: background worker "broken" \(bgw1:pm-cli:1:1\) did not start: it is Stopped \(see `bgworker logs --worker broken` where the postmaster runs\)$/);
  });

  it("restarts by pid, handle or type; one clear line when nothing matches", async () => {
    assert.equal((await cli(["restart", "5000"], cwd)).code, 0);
    assert.equal((await cli(["restart", "bgw1:pm-cli:0:1"], cwd)).code, 0);
    const byType = await cli(["restart", "ingest"], cwd);
    assert.equal(byType.code, 0, byType.stderr);
    assert.equal(byType.stdout, "");
    assert.deepEqual(handler.restarted, [{ pid: 5000 }, { handle: { postmaster: "pm-cli", slot: 0, generation: 1 } }, { type: "ingest" }]);
    const none = await cli(["restart", "nobody"], cwd);
    assert.equal(none.code, 1);
    assert.equal(none.stderr, 'bgworker: no registered background worker of type "nobody"\n');
    assert.equal((await cli(["restart"], cwd)).code, 2);
    assert.equal((await cli(["restart", "bgw1:broken"], cwd)).code, 2);
  });

  it("shows the status as a table or as JSON", async () => {
    await cli(["launch", "--library", "pkg", "--function", "fn", "--spi"], cwd);
    const table = await cli(["status"], cwd);
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trimEnd().split("\n");
    assert.equal(lines[0], "postmaster pid 4000: phase running, database none, up 1m5s, shared memory 0 B, 1 of 2 worker slots in use, 1 spare runner (1 warm, at most 8, 9.0 MiB)");
    assert.match(lines[1] ?? "", /^SLOT  NAME  TYPE  PID   BACKEND  STATE    UPTIME  CPU  RSS  START/);
    assert.match(lines[2] ?? "", /^0     fn    fn    5000  -        running  -       -    -    PostmasterStart  never    0         -          \d+\s+dynamic  spi    bgw1:pm-cli:0:1$/);
    const json = await cli(["status", "--json"], cwd);
    assert.deepEqual(JSON.parse(json.stdout), handler.status());
  });

  it("terminates by pid or handle, waiting for the exit with --wait", async () => {
    await cli(["launch", "--library", "pkg", "--function", "a"], cwd);
    await cli(["launch", "--library", "pkg", "--function", "b"], cwd);
    const byPid = await cli(["terminate", "5000", "--wait"], cwd);
    assert.equal(byPid.code, 0, byPid.stderr);
    assert.equal(handler.live.has(0), false, "--wait returned after the worker exited");
    const byHandle = await cli(["terminate", "bgw1:pm-cli:1:1", "--wait"], cwd);
    assert.equal(byHandle.code, 0, byHandle.stderr);
    assert.equal(handler.live.has(1), false);
    assert.deepEqual(handler.terminated, [5000, { postmaster: "pm-cli", slot: 1, generation: 1 }]);
    failed(await cli(["terminate", "5000"], cwd), 1, /^bgworker: no background worker with pid 5000$/);
  });

  it("stops: waits for the postmaster to exit, or not with --no-wait, or gives up after --timeout", async () => {
    const noWait = await cli(["stop", "--no-wait", "--mode", "smart"], cwd);
    assert.equal(noWait.code, 0, noWait.stderr);
    const timedOut = await cli(["stop", "--timeout", "200"], cwd);
    failed(timedOut, 1, /^bgworker: the postmaster on .* did not stop within 200 ms \(it is still shutting down\)$/);
    handler.onStop = () => setTimeout(() => void server.close(), 100);
    const waited = await cli(["stop", "--mode", "immediate"], cwd);
    assert.equal(waited.code, 0, waited.stderr);
    assert.deepEqual(handler.stops, ["smart", "fast", "immediate"]);
  });

  it("reloads, as pg_ctl reload, and refuses arguments", async () => {
    const reloaded = await cli(["reload"], cwd);
    assert.equal(reloaded.code, 0, reloaded.stderr);
    assert.equal(reloaded.stdout, "postmaster signaled\n");
    assert.equal(handler.reloads, 1);
    failed(await cli(["reload", "now"], cwd), 2, /^bgworker: unexpected argument "now" \(see "bgworker reload --help"\)$/);
    assert.equal(handler.reloads, 1);
  });
});

describe("launch: where a failed start's lines are", () => {
  it("names the logs command, with the log file when logs would not find it from here", () => {
    const registry = path.join(root, "registry-where");
    const project = fs.mkdtempSync(path.join(root, "project-"));
    const logFile = path.join(project, ".bgworker", "log", "bgworker.log");
    fs.mkdirSync(path.dirname(logFile), { recursive: true });
    fs.writeFileSync(logFile, "");
    const entry = { pid: process.pid, cwd: project, socket: null, logFile, http: null, extensions: [], startedAt: new Date().toISOString() };
    const unregister = register(entry, registry);
    try {
      assert.equal(whereToLook("ingest", process.pid, path.join(project, "sub"), registry), `see \`bgworker logs --worker ingest\`; log file ${logFile}`);
      assert.equal(whereToLook("my type", process.pid, root, registry), `see \`bgworker logs --worker 'my type' --log-file ${logFile}\``);
      assert.equal(whereToLook("x", process.pid + 1, project, registry), "see `bgworker logs --worker x` where the postmaster runs");
    } finally {
      unregister();
    }
    const noFile = register({ ...entry, logFile: null }, registry);
    try {
      assert.equal(whereToLook("it's", process.pid, project, registry), `the postmaster writes no log file (--log-file none): see its terminal output about "it's"`);
    } finally {
      noFile();
    }
  });
});
