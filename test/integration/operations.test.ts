/**
 * Operating a postmaster: the log file (and `bgworker logs`), a broken terminal, `start --daemon`,
 * `status --all`, `--http` (metrics, status, events, tokens) and `startup systemd`, with real processes.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer, type AddressInfo } from "node:net";
import { createInterface } from "node:readline";
import { after, describe, it } from "node:test";
import { Cluster } from "../../src/database/cluster.js";
import { RotatingLogFile } from "../../src/ops/log-file.js";
import type { StatusReport } from "../../src/status.js";
import { alive, CLI, eventually, PATIENCE_MS, processesIn, ROOT, runNode, startPostmaster, TEST_EXTENSION, waitGone, type Run } from "../helpers/postmaster.js";

const scratch = mkdtempSync(join(tmpdir(), "bgw-ops-"));
/** An isolated registry, so that `status --all` sees only this test's postmasters. */
const runtimeDir = join(scratch, "runtime");
after(() => rmSync(scratch, { recursive: true, force: true }));

function env(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { ...process.env, BGWORKER_DEBUG: "", XDG_RUNTIME_DIR: runtimeDir, ...extra };
}

function bgworker(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  return runNode([CLI, ...args], { cwd: options.cwd ?? ROOT, env: options.env ?? env() });
}

function ok(run: Run): Run {
  assert.equal(run.code, 0, `exit ${run.code}: ${run.stderr}`);
  return run;
}

function logOf(dir: string): string {
  const file = join(dir, ".bgworker", "log", "bgworker.log");
  return existsSync(file) ? readFileSync(file, "utf8") : "";
}

describe("log file", () => {
  it("is written by default, owner-only, alongside the terminal; bgworker logs reads and filters it", async () => {
    const pm = await startPostmaster({
      workers: [
        { name: "quiet", function: "sleepForever" },
        { name: "failing", function: "runThenExit", argument: 1, restartTimeMs: 60_000 },
      ],
      env: { XDG_RUNTIME_DIR: runtimeDir },
    });
    try {
      await pm.waitForLog(/^background worker "failing" \(PID \d+\) exited with exit code 1$/);
      const logDir = join(pm.dir, ".bgworker", "log");
      assert.equal(statSync(logDir).mode & 0o777, 0o700);
      assert.equal(statSync(join(logDir, "bgworker.log")).mode & 0o777, 0o600);
      // The terminal got JSON (--log-format json); so did the file, line for line.
      await eventually("the exit line in the file", async () => (logOf(pm.dir).includes("exited with exit code 1") ? true : undefined));
      const fileRecords = logOf(pm.dir).trim().split("\n").map((line) => JSON.parse(line) as { message: string });
      assert.ok(fileRecords.some((r) => r.message.startsWith("postmaster ready")));

      const failing = pm.records.find((r) => /^background worker "failing" \(PID \d+\) exited/.test(r.message))!;
      const failingPid = Number(/PID (\d+)/.exec(failing.message)![1]);
      // By type: its output and the postmaster's lines about it, nothing about the other worker.
      const byType = ok(await bgworker(["logs", "--worker", "failing"], { cwd: pm.dir })).stdout.trim().split("\n");
      assert.ok(byType.some((line) => line.includes('background worker "failing"')), byType.join("\n"));
      assert.ok(byType.every((line) => !line.includes("quiet")), byType.join("\n"));
      // Text by default even from a JSON file, PostgreSQL's prefix.
      assert.match(byType[0]!, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC \[\d+\] /);
      // By pid, as JSON, last line only.
      const byPid = ok(await bgworker(["logs", "--worker", String(failingPid), "--json", "-n", "1"], { cwd: pm.dir })).stdout.trim().split("\n");
      assert.equal(byPid.length, 1);
      assert.match((JSON.parse(byPid[0]!) as { message: string }).message, new RegExp(`\\(PID ${failingPid}\\)`));
      // From a subdirectory too (walks up to .bgworker/), and one clear line where there is none.
      const none = await bgworker(["logs"], { cwd: scratch });
      assert.equal(none.code, 1);
      assert.match(none.stderr, /^bgworker: no log file found: .*--log-file PATH\)\n$/);
      const usage = await bgworker(["logs", "-n", "x"], { cwd: pm.dir });
      assert.equal(usage.code, 2);
      // A --log-file that names nothing, or a directory, is said in one line, not shown as an empty log.
      const missing = await bgworker(["logs", "--log-file", join(scratch, "nothing.log")], { cwd: pm.dir });
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /^bgworker: no log file at .*nothing\.log: it does not exist\n$/);
      const directory = await bgworker(["logs", "--log-file", scratch], { cwd: pm.dir });
      assert.equal(directory.code, 1);
      assert.match(directory.stderr, /^bgworker: no log file at .*: it is not a regular file\n$/);
    } finally {
      await pm.close();
    }
  });

  it("logs -f follows the file across rotations", async () => {
    const file = join(scratch, "follow", "bgworker.log");
    // Five files: a burst of two or three rotations between two looks keeps the follower's file on disk.
    const writer = new RotatingLogFile(file, { rotationSize: 400, files: 5 });
    writer.write("2026-01-01 00:00:00.000 UTC [1] LOG:  before");
    const child = spawn(process.execPath, [CLI, "logs", "-f", "-n", "1", "--log-file", file], { env: env(), stdio: ["ignore", "pipe", "pipe"] });
    const lines: string[] = [];
    createInterface({ input: child.stdout }).on("line", (line) => lines.push(line));
    try {
      await eventually("the last line before following", async () => (lines.length >= 1 ? true : undefined));
      assert.match(lines[0]!, /before$/);
      // Enough lines for several rotations, some of them two at a time between two looks of the follower;
      // each line must be printed exactly once, in order.
      for (let i = 0; i < 40; i += 1) {
        writer.write(`2026-01-01 00:00:00.000 UTC [1] LOG:  line ${i}`);
        if (i === 20) await eventually("the first lines followed", async () => (lines.length >= 22 ? true : undefined));
      }
      assert.ok(existsSync(`${file}.2`), "the writer rotated");
      await eventually(`every followed line (got ${lines.length})`, async () => (lines.length >= 41 ? true : undefined)).catch((error: Error) => {
        throw new Error(`${error.message}: ${lines.join(" | ")}`);
      });
      assert.deepEqual(lines.slice(1).map((line) => /line (\d+)$/.exec(line)?.[1]), Array.from({ length: 40 }, (_, i) => String(i)));
    } finally {
      child.kill("SIGINT");
      await new Promise((resolve) => child.once("exit", resolve));
      writer.close();
    }
  });
});

describe("a broken terminal", () => {
  it("never kills the postmaster: with stdout and stderr closed it still logs to the file, and SIGINT stops its workers and its server", async () => {
    const dir = mkdtempSync(join(scratch, "epipe-"));
    // The managed server runs as the postgres user, which must reach its data directory.
    chmodSync(scratch, 0o755);
    chmodSync(dir, 0o755);
    const pgdata = join(dir, "pgdata");
    const workers = [
      { name: "looper", function: "latchLoop" },
      { name: "chatty", function: "runThenExit", argument: 1, restartTimeMs: 50 },
    ];
    const child = spawn(process.execPath, [CLI, "start", TEST_EXTENSION, "--pgdata", pgdata, "--socket", join(dir, "bgworker.sock")], {
      cwd: dir,
      env: env({ BGW_TEST_WORKERS: JSON.stringify(workers) }),
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
    try {
      await new Promise<void>((resolve, reject) => {
        createInterface({ input: child.stdout }).on("line", (line) => line === "ready" && resolve());
        void exited.then(() => reject(new Error("exited before ready")));
      });
      // The reader goes away (`bgworker start ... | head -1`): both pipes are closed on our side.
      child.stdout.destroy();
      child.stderr.destroy();
      // The chatty worker keeps exiting and restarting: every one of those lines now meets a broken pipe.
      const exitsBefore = (logOf(dir).match(/"chatty" \(PID \d+\) exited/g) ?? []).length;
      await eventually("more restarts logged after the pipes closed", async () =>
        (logOf(dir).match(/"chatty" \(PID \d+\) exited/g) ?? []).length >= exitsBefore + 3 ? true : undefined,
      );
      assert.equal(child.exitCode, null, "the postmaster is still running");
      child.kill("SIGINT");
      const { code, signal } = await exited;
      assert.deepEqual({ code, signal }, { code: 0, signal: null });
      assert.match(logOf(dir), /LOG: {2}postmaster shut down\n$/);
      assert.match(logOf(dir), /background worker "looper" \(PID \d+\) exited with exit code 0/);
      assert.equal(await (await Cluster.at(pgdata)).runningPid(), null, "the managed server is stopped");
      assert.deepEqual(await waitGone(processesIn(dir)), [], "no worker outlived the postmaster");
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      const cluster = await Cluster.at(pgdata).catch(() => undefined);
      if (cluster !== undefined && (await cluster.runningPid()) !== null) await cluster.stop("immediate");
      for (const pid of processesIn(dir)) process.kill(pid, "SIGKILL");
    }
  });
});

describe("start --daemon and status --all", () => {
  it("returns once ready with the pid of a detached postmaster that status, status --all and stop reach", async () => {
    const dir = mkdtempSync(join(scratch, "daemon-"));
    const socket = join(dir, "bgworker.sock");
    const workers = JSON.stringify([{ name: "bg looper", function: "latchLoop" }]);
    const started = ok(await bgworker(["start", "-d", TEST_EXTENSION, "--no-database", "--socket", socket], { cwd: dir, env: env({ BGW_TEST_WORKERS: workers }) }));
    assert.match(started.stdout, /^\d+\n$/);
    assert.equal(started.stderr, "");
    const pid = Number(started.stdout.trim());
    try {
      assert.ok(alive(pid));
      // Its own session (setsid), with no controlling terminal.
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      assert.equal(Number(fields[3]), pid, "session leader");
      assert.equal(Number(fields[4]), 0, "no controlling terminal");

      const report = JSON.parse(ok(await bgworker(["status", "--json", "--socket", socket])).stdout) as StatusReport;
      assert.equal(report.postmaster.pid, pid);
      const looper = await eventually("the worker running", async () => {
        const r = JSON.parse(ok(await bgworker(["status", "--json", "--socket", socket])).stdout) as StatusReport;
        const row = r.workers[0];
        return row?.state === "running" && row.cpuSeconds != null && row.rssBytes != null ? row : undefined;
      });
      assert.ok(looper.rssBytes! > 1024 * 1024 && looper.cpuSeconds! >= 0 && looper.uptimeMs! >= 0);

      const listed = JSON.parse(ok(await bgworker(["status", "--all", "--json"])).stdout) as { entry: { pid: number; cwd: string; socket: string }; report?: StatusReport }[];
      const mine = listed.find((item) => item.entry.pid === pid);
      assert.ok(mine !== undefined, JSON.stringify(listed));
      assert.equal(mine.entry.cwd, dir);
      assert.equal(mine.report?.postmaster.pid, pid);
      assert.match(ok(await bgworker(["status", "--all"])).stdout, new RegExp(`^PID\\s+PHASE\\s+UP\\s+RUNNING\\s+HTTP\\s+DIRECTORY\\n(.*\\n)*${pid}\\s+running\\s+\\S+\\s+1/1\\s+-\\s+${dir}\\n`));
      assert.equal(statSync(join(runtimeDir, "bgworker")).mode & 0o777, 0o700);

      assert.match(logOf(dir), /postmaster ready/);
      ok(await bgworker(["stop", "--socket", socket]));
      await eventually("the daemon gone", async () => (alive(pid) ? undefined : true));
      assert.match(logOf(dir), /postmaster shut down/);
      assert.ok(!existsSync(join(runtimeDir, "bgworker", `${pid}.json`)), "its registry entry is removed");
      assert.equal(ok(await bgworker(["status", "--all"])).stdout.includes(String(pid)), false);
    } finally {
      if (alive(pid)) process.kill(pid, "SIGKILL");
      for (const left of await waitGone(processesIn(dir))) process.kill(left, "SIGKILL");
    }
  });

  it("fails with exit 1 and the reason when the postmaster cannot start", async () => {
    const dir = mkdtempSync(join(scratch, "daemon-fail-"));
    const run = await bgworker(["start", "--daemon", join(dir, "missing.ts"), "--no-database", "--socket", join(dir, "s.sock")], { cwd: dir });
    assert.equal(run.code, 1, run.stderr);
    assert.equal(run.stdout, "");
    assert.match(run.stderr, /^bgworker: extension module not found: .*missing\.ts\n$/);
    assert.deepEqual(await waitGone(processesIn(dir)), []);
  });
});

describe("start --http", () => {
  it("serves Prometheus metrics, the status JSON, server-sent events, and requires its token", async () => {
    const pm = await startPostmaster({
      workers: [{ name: "metered", function: "sleepForever", restartTimeMs: 100 }],
      args: ["--no-database", "--http", "127.0.0.1:0", "--http-token", "s3cret"],
      env: { XDG_RUNTIME_DIR: runtimeDir },
    });
    try {
      const url = await pm.until("the HTTP address", () => pm.stdout.map((l) => /^serving HTTP on (http:\/\/127\.0\.0\.1:\d+\/)$/.exec(l)?.[1]).find(Boolean));
      const auth = { headers: { authorization: "Bearer s3cret" } };
      assert.equal((await fetch(`${url}metrics`)).status, 401);
      assert.equal((await fetch(`${url}metrics`, { headers: { authorization: "Bearer wrong" } })).status, 401);
      assert.equal((await fetch(`${url}api/status?token=s3cret`)).status, 200);
      assert.equal((await fetch(`${url}api/status`, { ...auth, method: "POST" })).status, 405);
      const [started] = await pm.waitForEvents("started", 1);

      const metrics = await (await fetch(`${url}metrics`, auth)).text();
      for (const name of [
        "bgworker_worker_state", "bgworker_worker_restarts_total", "bgworker_worker_uptime_seconds", "bgworker_worker_cpu_seconds_total",
        "bgworker_worker_resident_memory_bytes", "bgworker_worker_launch_seconds", "bgworker_postmaster_phase", "bgworker_postmaster_uptime_seconds",
        "bgworker_shared_memory_bytes", "process_cpu_user_seconds_total", "nodejs_eventloop_lag_seconds",
      ]) {
        assert.match(metrics, new RegExp(`^# TYPE ${name} `, "m"), name);
      }
      assert.match(metrics, /^bgworker_worker_state\{slot="0",name="metered",type="metered",state="running"\} 1$/m);
      assert.match(metrics, /^bgworker_postmaster_phase\{phase="running"\} 1$/m);

      const status = (await (await fetch(`${url}api/status`, auth)).json()) as StatusReport;
      assert.equal(status.postmaster.pid, pm.pid);
      assert.equal(status.workers[0]?.pid, started!.pid);

      // Events: the current status at once, then one per change; a killed worker's restart shows up.
      const controller = new AbortController();
      const response = await fetch(`${url}api/events`, { ...auth, signal: controller.signal });
      assert.equal(response.headers.get("content-type"), "text/event-stream");
      const reader = response.body!.getReader();
      let text = "";
      const statuses = (): StatusReport[] =>
        [...text.matchAll(/event: status\ndata: (.*)\n\n/g)].map((m) => JSON.parse(m[1]!) as StatusReport);
      const readUntil = async (what: string, probe: () => boolean): Promise<void> => {
        const deadline = Date.now() + PATIENCE_MS;
        while (!probe()) {
          if (Date.now() > deadline) throw new Error(`no ${what} in ${text.slice(-2000)}`);
          const { value, done } = await reader.read();
          if (done) throw new Error(`stream ended before ${what}`);
          text += Buffer.from(value).toString();
        }
      };
      await readUntil("initial status", () => statuses().length >= 1);
      process.kill(started!.pid, "SIGKILL");
      await readUntil("the restart", () => statuses().some((s) => s.workers[0]?.restarts === 1 && s.workers[0].state === "running"));
      assert.ok(statuses().some((s) => s.workers[0]?.state === "backoff" || s.workers[0]?.lastExit?.signal === "SIGKILL"));
      await readUntil("a log event", () => /event: log\ndata: /.test(text));
      controller.abort();

      const after = await (await fetch(`${url}metrics`, auth)).text();
      assert.match(after, /^bgworker_worker_restarts_total\{slot="0",name="metered",type="metered"\} 1$/m);
      assert.match(after, /^bgworker_worker_last_exit_code\{slot="0",name="metered",type="metered"\} 137$/m);
      assert.match(after, /^bgworker_worker_launch_seconds_count\{type="metered"\} [1-9]/m);
      const page = await fetch(`${url}?token=s3cret`);
      assert.equal(page.status, 200);
      assert.match(await page.text(), /<title>bgworker<\/title>/);
    } finally {
      await pm.close();
    }
  });

  it("fails with exit 1, its workers stopped, when the port is taken", async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const port = (taken.address() as AddressInfo).port;
    const dir = mkdtempSync(join(scratch, "http-taken-"));
    try {
      const workers = JSON.stringify([{ name: "w", function: "sleepForever" }]);
      const run = await bgworker(["start", TEST_EXTENSION, "--no-database", "--http", String(port), "--socket", join(dir, "s.sock")], { cwd: dir, env: env({ BGW_TEST_WORKERS: workers }) });
      assert.equal(run.code, 1);
      assert.match(run.stderr, new RegExp(`^bgworker: cannot serve HTTP on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE.*\\n$`, "m"));
      assert.doesNotMatch(run.stdout, /ready/);
      assert.deepEqual(await waitGone(processesIn(dir)), []);
    } finally {
      taken.close();
    }
  });

  it("refuses a non-loopback address without a token before anything starts", async () => {
    const run = await bgworker(["start", TEST_EXTENSION, "--no-database", "--http", "0.0.0.0:0"], { env: env({ BGWORKER_HTTP_TOKEN: "" }) });
    assert.equal(run.code, 2);
    assert.match(run.stderr, /^bgworker: --http "0\.0\.0\.0:0" is not a loopback address: give a token with --http-token or BGWORKER_HTTP_TOKEN/);
  });
});

describe("restart", () => {
  it("starts a new process now for a running worker that never restarts, and for one waiting out its restart time", async () => {
    const pm = await startPostmaster({
      workers: [
        { name: "steady", function: "sleepForever", restartTimeMs: null },
        { name: "slow", function: "runThenExit", argument: 1, restartTimeMs: 600_000 },
      ],
    });
    try {
      const socket = pm.socket;
      const report = async (): Promise<StatusReport> => JSON.parse(ok(await bgworker(["status", "--json", "--socket", socket])).stdout) as StatusReport;
      const row = async (name: string) => (await report()).workers.find((w) => w.name === name)!;
      const steady = await eventually("steady running", async () => ((await row("steady")).state === "running" ? row("steady") : undefined));
      await eventually("slow in backoff", async () => ((await row("slow")).state === "backoff" ? true : undefined));

      ok(await bgworker(["restart", String(steady.pid), "--socket", socket]));
      const restarted = await eventually("steady restarted", async () => {
        const r = await row("steady");
        return r.state === "running" && r.pid !== steady.pid ? r : undefined;
      });
      assert.equal(restarted.restarts, 1);
      assert.ok(!alive(steady.pid!));
      await pm.waitForLog(new RegExp(`^restarting background worker "steady" \\(PID ${steady.pid}\\) at administrator request$`));

      // By type, out of a ten-minute backoff.
      ok(await bgworker(["restart", "slow", "--socket", socket]));
      await eventually("slow started again", async () => ((await row("slow")).restarts >= 1 ? true : undefined));
      await pm.until("slow's second run", () => {
        const slowPids = new Set(pm.records.filter((r) => r.worker?.name === "slow").map((r) => r.pid));
        return pm.events("started").filter((e) => slowPids.has(e.pid)).length >= 2 ? true : undefined;
      });

      const none = await bgworker(["restart", "nobody", "--socket", socket]);
      assert.equal(none.code, 1);
      assert.equal(none.stderr, 'bgworker: no registered background worker of type "nobody"\n');
    } finally {
      await pm.close();
    }
  });
});

describe("startup systemd", () => {
  it("prints a unit for this project with the resolved node, CLI and extensions", async () => {
    const unit = ok(await bgworker(["startup", "systemd", "test/fixtures/extension.ts", "--no-database", "--http", "9187"])).stdout;
    assert.match(unit, new RegExp(`^WorkingDirectory=${ROOT.replace(/\/$/, "")}$`, "m"));
    assert.ok(unit.includes(`ExecStart=${process.execPath} ${CLI} start ${join(ROOT, "test/fixtures/extension.ts")} --no-database --http 9187\n`), unit);
    for (const line of ["Type=simple", "KillSignal=SIGINT", "KillMode=mixed", "Restart=on-failure", "WantedBy=multi-user.target"]) {
      assert.match(unit, new RegExp(`^${line}$`, "m"));
    }
    assert.match(unit, /^User=\S+$/m);
    assert.equal((await bgworker(["startup", "systemd", "x.ts", "--http-token", "t"])).code, 2);
    const secret = await bgworker(["startup", "systemd", "x.ts", "--database", "postgres://u:hunter2@db/app"]);
    assert.equal(secret.code, 2);
    assert.ok(!secret.stderr.includes("hunter2") && !secret.stdout.includes("hunter2"));
    assert.equal((await bgworker(["startup", "launchd", "x.ts"])).code, 2);
  });
});
