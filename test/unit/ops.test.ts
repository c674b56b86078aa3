/**
 * Operating pieces without processes: log file rotation, sinks, /proc parsing, HTTP addresses, registry,
 * tracker, reading the log back by worker, the detached postmaster's invocation.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { after, describe, it } from "node:test";
import { formatText, Logger, teeSink, terminalSink, type LogRecord } from "../../src/log.js";
import { DAEMON_ENV, DATABASE_URL_ENV, detachedInvocation } from "../../src/ops/daemon.js";
import { isLoopback, parseHttpAddress, urlOf } from "../../src/ops/http.js";
import { parseSize, RotatingLogFile } from "../../src/ops/log-file.js";
import { LogTail } from "../../src/ops/log-tail.js";
import { exitStatus, OpsMetrics } from "../../src/ops/metrics.js";
import { cpuSecondsFromStat, processUsage, rssBytesFromStatus, withUsage } from "../../src/ops/proc-usage.js";
import { listPostmasters, register } from "../../src/ops/registry.js";
import { StatusTracker, type OpsSource } from "../../src/ops/source.js";
import { eventOf, LogRenderer, matchesWorker, parseLogLine, WorkerIndex } from "../../src/ops/log-lines.js";
import { follow, lastLines } from "../../src/ops/log-read.js";
import { systemdQuote, systemdUnit } from "../../src/ops/systemd.js";
import type { StatusReport, WorkerStatusRow } from "../../src/status.js";

const dir = mkdtempSync(join(tmpdir(), "bgw-ops-unit-"));
after(() => rmSync(dir, { recursive: true, force: true }));

describe("log file", () => {
  it("rotates by size and keeps a bounded number of files", () => {
    const path = join(dir, "rot", "bgworker.log");
    const file = new RotatingLogFile(path, { rotationSize: 100, files: 3 });
    for (let i = 0; i < 20; i += 1) file.write(`line ${String(i).padStart(2, "0")} ${"x".repeat(30)}`);
    file.close();
    assert.equal(statSync(join(dir, "rot")).mode & 0o777, 0o700);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.ok(existsSync(`${path}.1`) && existsSync(`${path}.2`));
    assert.ok(!existsSync(`${path}.3`), "at most 3 files");
    for (const name of [path, `${path}.1`, `${path}.2`]) assert.ok(statSync(name).size <= 100, `${name} within the rotation size`);
    // The newest lines are in the current file, the ones before in .1.
    assert.match(readFileSync(path, "utf8"), /line 19/);
    const older = readFileSync(`${path}.1`, "utf8");
    assert.ok(!older.includes("line 19") && older.includes("line 1"));
  });

  it("appends to an existing file and counts its size", () => {
    const path = join(dir, "append.log");
    writeFileSync(path, "x".repeat(90) + "\n");
    const file = new RotatingLogFile(path, { rotationSize: 100, files: 2 });
    file.write("y".repeat(20));
    file.close();
    assert.equal(readFileSync(`${path}.1`, "utf8").length, 91);
    assert.equal(readFileSync(path, "utf8"), "y".repeat(20) + "\n");
  });

  it("parses sizes with PostgreSQL's units", () => {
    assert.equal(parseSize("10MB"), 10 * 1024 * 1024);
    assert.equal(parseSize("512kB"), 512 * 1024);
    assert.equal(parseSize("1GB"), 1024 ** 3);
    assert.equal(parseSize("4096"), 4096);
    assert.equal(parseSize("0"), 0);
    assert.equal(parseSize("10 mb"), undefined);
    assert.equal(parseSize("-1"), undefined);
  });
});

describe("log sinks", () => {
  it("drop lines once the terminal's reader is gone, without an unhandled error", async () => {
    const stream = new PassThrough() as unknown as NodeJS.WriteStream;
    const sink = terminalSink(stream);
    sink("one");
    (stream as unknown as PassThrough).destroy(Object.assign(new Error("write EPIPE"), { code: "EPIPE" }));
    await new Promise((resolve) => setImmediate(resolve));
    sink("two"); // must neither throw nor emit an unhandled 'error'
    await new Promise((resolve) => setImmediate(resolve));
  });

  it("tee gives every sink the line even when one throws", () => {
    const got: string[] = [];
    teeSink(
      () => {
        throw new Error("broken");
      },
      (line) => got.push(line),
    )("hello");
    assert.deepEqual(got, ["hello"]);
  });

  it("a tail keeps the last lines and feeds new ones", () => {
    const tail = new LogTail(3);
    const fed: string[] = [];
    tail.subscribe((line) => fed.push(line));
    for (const line of ["a", "b", "c", "d"]) tail.sink(line);
    assert.deepEqual(tail.lines(), ["b", "c", "d"]);
    assert.deepEqual(tail.lines(2), ["c", "d"]);
    assert.deepEqual(fed, ["a", "b", "c", "d"]);
  });
});

describe("process usage from /proc", () => {
  it("parses stat with a command name holding spaces and parentheses", () => {
    const stat = "1234 (node (x) y) S 1 1234 1234 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 11 0 12345 1000 2000";
    assert.equal(cpuSecondsFromStat(stat), 3);
    assert.equal(rssBytesFromStatus("Name:\tnode\nVmRSS:\t   2048 kB\n"), 2048 * 1024);
    assert.equal(rssBytesFromStatus("Name:\tkthread\n"), null);
  });

  it("reads this process, and nothing for a pid that is gone", () => {
    const usage = processUsage(process.pid);
    assert.ok(usage !== null && usage.rssBytes > 0 && usage.cpuSeconds >= 0);
    assert.equal(processUsage(2 ** 22 + 12345), null);
    const row = withUsage({ pid: null as number | null }, 1000, 5000);
    assert.deepEqual(row, { pid: null, uptimeMs: null, cpuSeconds: null, rssBytes: null });
    assert.equal(withUsage({ pid: process.pid }, 1000, 5000).uptimeMs, 4000);
  });
});

describe("HTTP addresses", () => {
  it("parses [HOST:]PORT, loopback by default", () => {
    assert.deepEqual(parseHttpAddress("9187"), { host: "127.0.0.1", port: 9187 });
    assert.deepEqual(parseHttpAddress("0.0.0.0:80"), { host: "0.0.0.0", port: 80 });
    assert.deepEqual(parseHttpAddress("[::1]:8080"), { host: "::1", port: 8080 });
    assert.deepEqual(parseHttpAddress("localhost:1"), { host: "localhost", port: 1 });
    for (const bad of ["", "x", "70000", "host:", ":80", "[zz]:80", "1.2.3.4:80:80"]) assert.equal(parseHttpAddress(bad), undefined, bad);
    assert.equal(urlOf({ host: "::1", port: 1 }), "http://[::1]:1/");
  });

  it("knows loopback addresses", () => {
    for (const host of ["127.0.0.1", "127.8.9.1", "::1", "localhost"]) assert.ok(isLoopback(host), host);
    for (const host of ["0.0.0.0", "10.0.0.1", "::", "example.com", "128.0.0.1"]) assert.ok(!isLoopback(host), host);
  });

  it("reports an exit by signal as the shell does", () => {
    assert.equal(exitStatus({ code: 1, signal: null, at: "" }), 1);
    assert.equal(exitStatus({ code: null, signal: "SIGKILL", at: "" }), 137);
  });
});

describe("postmaster registry", () => {
  it("lists live postmasters, owner-only, and removes dead entries", () => {
    const registry = join(dir, "registry");
    const entry = { pid: process.pid, cwd: "/srv/app", socket: null, logFile: null, http: null, extensions: ["x.ts"], startedAt: new Date().toISOString() };
    const unregister = register(entry, registry);
    writeFileSync(join(registry, "999999999.json"), JSON.stringify({ ...entry, pid: 999_999_999 }));
    writeFileSync(join(registry, "12.json"), "not json");
    assert.equal(statSync(registry).mode & 0o777, 0o700);
    assert.deepEqual(listPostmasters(registry), [entry]);
    assert.ok(!existsSync(join(registry, "999999999.json")) && !existsSync(join(registry, "12.json")));
    unregister();
    assert.deepEqual(listPostmasters(registry), []);
  });
});

function row(fields: Partial<WorkerStatusRow>): WorkerStatusRow {
  return {
    slot: 0, name: "w", type: "w", pid: 10, state: "running", startTime: "PostmasterStart", restartTimeMs: 100, restarts: 0,
    lastExit: null, notifyPid: 0, kind: "static", spi: false, shmem: false, backoffMs: null, handle: null, ...fields,
  };
}

describe("status tracker", () => {
  it("records history, measures launch latency and reports each change once", async () => {
    let now = 1_000;
    let workers: WorkerStatusRow[] = [row({ state: "running" })];
    const listeners = new Set<() => void>();
    const source: OpsSource = {
      status: (): StatusReport => ({
        postmaster: { pid: 1, phase: "running", database: "none", uptimeMs: 0, shmemBytes: 0, maxWorkerProcesses: 8, spares: { count: 1, ready: 1, target: 1, max: 8, pssBytes: 9_437_184 }, shutdown: null },
        workers,
      }),
      onChange: (listener) => (listeners.add(listener), () => listeners.delete(listener)),
      logTail: new LogTail(),
    };
    const tracker = new StatusTracker(source, 3_600_000, () => now);
    const reports: StatusReport[] = [];
    const latencies: number[] = [];
    tracker.subscribe((report) => reports.push(report));
    tracker.onLaunchLatency((seconds) => latencies.push(seconds));
    const change = async (next: WorkerStatusRow[], at: number): Promise<void> => {
      workers = next;
      now = at;
      for (const listener of listeners) listener();
      for (const listener of listeners) listener(); // coalesced: one snapshot per tick
      await new Promise((resolve) => setImmediate(resolve));
    };
    await change([row({ state: "backoff", pid: null })], 2_000);
    await change([row({ state: "starting", pid: 11, restarts: 1 })], 2_100);
    await change([row({ state: "running", pid: 11, restarts: 1 })], 2_350);
    await change([row({ state: "running", pid: 11, restarts: 1 })], 2_400); // nothing changed
    assert.equal(reports.length, 3);
    assert.deepEqual(latencies, [0.25]);
    assert.deepEqual(tracker.historyOf()["0:w"]!.map((p) => [p.t, p.state, p.restarts]), [
      [1_000, "running", 0],
      [2_000, "backoff", 0],
      [2_100, "starting", 1],
      [2_350, "running", 1],
    ]);
    tracker.close();
    assert.equal(listeners.size, 0);
  });

  it("measures every launch that reaches running once, from the row's uptime, even one never seen starting", async () => {
    let workers: WorkerStatusRow[] = [
      row({ slot: 0, name: "a", state: "running", pid: 10, uptimeMs: 5_000 }),
      row({ slot: 1, name: "b", state: "starting", pid: 20, uptimeMs: 3 }),
    ];
    const listeners = new Set<() => void>();
    const source: OpsSource = {
      status: (): StatusReport => ({
        postmaster: { pid: 1, phase: "running", database: "none", uptimeMs: 0, shmemBytes: 0, maxWorkerProcesses: 8, spares: { count: 1, ready: 1, target: 1, max: 8, pssBytes: 9_437_184 }, shutdown: null },
        workers,
      }),
      onChange: (listener) => (listeners.add(listener), () => listeners.delete(listener)),
      logTail: new LogTail(),
    };
    const tracker = new StatusTracker(source, 3_600_000, () => 0);
    const latencies: Array<[string, number, number | null]> = [];
    tracker.onLaunchLatency((seconds, r) => latencies.push([r.name, seconds, r.pid]));
    const snapshot = async (next: WorkerStatusRow[]): Promise<void> => {
      workers = next;
      for (const listener of listeners) listener();
      await new Promise((resolve) => setImmediate(resolve));
    };
    // "a" was running before the tracker watched: not a launch it saw. "b" was starting: measured when it enters.
    await snapshot([row({ slot: 0, name: "a", pid: 10, uptimeMs: 5_010 }), row({ slot: 1, name: "b", pid: 20, uptimeMs: 42 })]);
    await snapshot([row({ slot: 0, name: "a", pid: 10, uptimeMs: 5_020 }), row({ slot: 1, name: "b", pid: 20, uptimeMs: 52 })]);
    assert.deepEqual(latencies, [["b", 0.042, 20]]);
    // "a" restarts, and its new process enters within one coalesced tick: never seen starting, still measured.
    await snapshot([row({ slot: 0, name: "a", pid: null, state: "backoff", restarts: 1 }), row({ slot: 1, name: "b", pid: 20 })]);
    await snapshot([row({ slot: 0, name: "a", pid: 11, restarts: 1, uptimeMs: 7 }), row({ slot: 1, name: "b", pid: 20 })]);
    await snapshot([row({ slot: 0, name: "a", pid: 11, restarts: 1, uptimeMs: 9 }), row({ slot: 1, name: "b", pid: 20 })]);
    // A restart straight from running to running (an administrator's restart seen only at both ends).
    await snapshot([row({ slot: 0, name: "a", pid: 12, restarts: 2, uptimeMs: 15 }), row({ slot: 1, name: "b", pid: 20 })]);
    // A slot reused by another worker whose pid is the old one's: a new worker key, measured.
    await snapshot([row({ slot: 0, name: "a", pid: 12, restarts: 2 }), row({ slot: 1, name: "c", pid: 20, uptimeMs: 1 })]);
    assert.deepEqual(latencies, [["b", 0.042, 20], ["a", 0.007, 11], ["a", 0.015, 12], ["c", 0.001, 20]]);
    tracker.close();
  });
});

describe("reading the log back", () => {
  it("parses text lines, worker output and JSON lines", () => {
    assert.deepEqual(parseLogLine('2026-01-02 03:04:05.678 UTC [42] LOG:  background worker "w" (PID 43) exited with exit code 1'), {
      time: "2026-01-02T03:04:05.678Z", pid: 42, level: "LOG", message: 'background worker "w" (PID 43) exited with exit code 1',
    });
    assert.deepEqual(parseLogLine("2026-01-02 03:04:05.678 UTC [43] my type: hello: world"), {
      time: "2026-01-02T03:04:05.678Z", pid: 43, level: "LOG", message: "hello: world", worker: { type: "my type", name: "my type", pid: 43 }, stream: "stdout",
    });
    const json = { time: "2026-01-02T03:04:05.678Z", pid: 1, level: "WARNING", message: "m" };
    assert.deepEqual(parseLogLine(JSON.stringify(json)), json);
    assert.equal(parseLogLine("garbage"), undefined);
  });

  it("filters by worker type or pid", () => {
    const exit = '2026-01-02 03:04:05.678 UTC [42] LOG:  background worker "w" (PID 43) exited with exit code 1';
    const output = "2026-01-02 03:04:05.678 UTC [43] w: hi";
    for (const line of [exit, output]) {
      assert.ok(matchesWorker(line, parseLogLine(line), { type: "w" }), line);
      assert.ok(matchesWorker(line, parseLogLine(line), { pid: 43 }), line);
      assert.ok(!matchesWorker(line, parseLogLine(line), { type: "v" }), line);
      assert.ok(!matchesWorker(line, parseLogLine(line), { pid: 44 }), line);
    }
  });

  it("selects every line about a worker type in a text log: its name's lines, its pid's, continuations", () => {
    // A worker named "n1" of type "ingest" (DEBUG lines use the name), pid 43; another worker "other", pid 44.
    const at = "2026-01-02 03:04:05.678 UTC";
    const lines = [
      `${at} [42] DEBUG:  registering background worker "n1"`,
      `${at} [42] DEBUG:  registering background worker "other"`,
      `${at} [42] DEBUG:  started background worker "n1" (PID 43)`,
      `${at} [42] DEBUG:  started background worker "other" (PID 44)`,
      `${at} [43] ingest: hello`,
      `${at} [44] other: hello`,
      `${at} [43] ERROR:  background worker "ingest": boom`,
      `${at} [43] DETAIL:  Error: boom`,
      "    at main (/app/worker.ts:3:9)",
      `${at} [44] LOG:  a line of its own`,
      `${at} [44] DETAIL:  about other`,
      `${at} [43] FATAL:  terminating background worker "ingest" due to administrator command`,
      `${at} [42] WARNING:  malformed request from background worker (PID 43): bad`,
      `${at} [42] LOG:  background worker "ingest" (PID 43) exited with exit code 1`,
      `${at} [42] DETAIL:  it ran 5 ms`,
      `${at} [42] LOG:  background worker "other" (PID 44) exited with exit code 0`,
      `${at} [42] DEBUG:  unregistering background worker "n1"`,
      `${at} [42] LOG:  postmaster ready: 1 extension(s), 2 static worker(s)`,
    ];
    const file = join(dir, "filter-text", "bgworker.log");
    const writer = new RotatingLogFile(file, { rotationSize: 0, files: 1 });
    for (const line of lines) writer.write(line);
    writer.close();
    const ingest = lastLines(file, 100, { json: false, filter: { type: "ingest" } }).lines;
    assert.deepEqual(ingest, [0, 2, 4, 6, 7, 8, 11, 12, 13, 14, 16].map((i) => lines[i]));
    const other = lastLines(file, 100, { json: false, filter: { type: "other" } }).lines;
    assert.deepEqual(other, [1, 3, 5, 9, 10, 15].map((i) => lines[i]));
    const pid43 = lastLines(file, 100, { json: false, filter: { pid: 43 } }).lines;
    assert.deepEqual(pid43, [2, 4, 6, 7, 8, 11, 12, 13, 14].map((i) => lines[i]));
    // The last lines count selected lines only.
    assert.deepEqual(lastLines(file, 2, { json: false, filter: { type: "ingest" } }).lines, [lines[14], lines[16]]);
  });

  it("selects the same lines in a JSON log, and goes on knowing the worker when following", () => {
    const records: LogRecord[] = [];
    const logger = new Logger({ format: "json", pid: 42, debug: true, sink: (line) => records.push(JSON.parse(line) as LogRecord) });
    const ingest = { name: "n1", type: "ingest", pid: 43 };
    logger.log("DEBUG", 'registering background worker "n1"');
    logger.log("DEBUG", 'started background worker "n1" (PID 43)', { worker: ingest });
    logger.output(ingest, "stdout", "hello");
    logger.output({ name: "other", type: "other", pid: 44 }, "stdout", "hello");
    logger.fromWorker(ingest, "ERROR", 'background worker "ingest": boom', "Error: boom\n    at main");
    logger.log("WARNING", "malformed request from background worker (PID 43): bad");
    logger.log("LOG", 'background worker "ingest" (PID 43) exited with exit code 1', { worker: ingest });
    logger.log("LOG", "postmaster ready");
    const file = join(dir, "filter-json", "bgworker.log");
    const writer = new RotatingLogFile(file, { rotationSize: 0, files: 1 });
    for (const record of records) writer.write(JSON.stringify(record));
    writer.close();
    const { lines, renderer } = lastLines(file, 100, { json: true, filter: { type: "ingest" } });
    assert.deepEqual(lines.map((l) => (JSON.parse(l) as LogRecord).message), [0, 1, 2, 4, 5, 6].map((i) => records[i]!.message));
    assert.deepEqual(lastLines(file, 100, { json: false, filter: { pid: 43 } }).lines, [1, 2, 4, 5, 6].map((i) => formatText(records[i]!)));
    // Following: what the lines read taught carries on (pid 43 is "ingest", and a DETAIL continues its line).
    const textRenderer = lastLines(file, 0, { json: false, filter: { type: "ingest" } }).renderer;
    const at = "2026-01-02 03:04:05.678 UTC";
    assert.equal(textRenderer.render(`${at} [43] LOG:  a line of its own`), `${at} [43] LOG:  a line of its own`);
    assert.equal(textRenderer.render(`${at} [43] DETAIL:  more`), `${at} [43] DETAIL:  more`);
    assert.equal(textRenderer.render(`${at} [44] LOG:  not it`), undefined);
    assert.equal(textRenderer.render(`${at} [44] DETAIL:  not it either`), undefined);
    assert.ok(renderer.render(JSON.stringify({ ...records[2], message: "again" })) !== undefined);
  });

  it("learns pids and names from the postmaster's messages, a new process forgetting an old one", () => {
    const at = "2026-01-02 03:04:05.678 UTC";
    const index = new WorkerIndex();
    for (const line of [
      `${at} [42] DEBUG:  started background worker "n1" (PID 43)`,
      `${at} [42] LOG:  restarting background worker "ingest" (PID 43) at administrator request`,
      `${at} [42] DEBUG:  started background worker "x" (PID 44)`,
      `${at} [44] FATAL:  terminating background worker "tx" due to administrator command`,
      `${at} [42] DEBUG:  started background worker "other" (PID 44)`,
    ]) {
      index.learn(line);
    }
    assert.deepEqual([...index.typeOfName], [["n1", "ingest"], ["x", "tx"]]);
    assert.deepEqual([...index.typeOfPid], [[43, "ingest"]], "pid 44 is another process now, of a type not known yet");
    const line = `${at} [42] DEBUG:  unregistering background worker "n1"`;
    assert.ok(matchesWorker(line, parseLogLine(line), { type: "ingest" }, index));
    assert.ok(!matchesWorker(line, parseLogLine(line), { type: "ingest" }), "without the index, the name says nothing");
    assert.equal(new LogRenderer({ json: false }).render("no prefix"), "no prefix");
  });

  it("learns a worker's name from the DEBUG line BGWORKER_DEBUG=1 writes, and its type from its exit without it", () => {
    const ingest = { name: "n1", type: "ingest", pid: 43 };
    const write = (debug: boolean): string[] => {
      const lines: string[] = [];
      const logger = new Logger({ format: "text", pid: 42, debug, sink: (line) => lines.push(line) });
      logger.event({ event: "worker-started", name: "n1", pid: 43 }, { worker: ingest });
      logger.event({ event: "worker-exited", type: "ingest", pid: 43, code: 1, signal: null }, { worker: ingest });
      logger.event({ event: "worker-unregistering", name: "n1" }, { worker: ingest });
      return lines;
    };
    const debug = write(true);
    const index = new WorkerIndex();
    for (const line of debug) index.learn(line);
    assert.deepEqual([...index.typeOfName], [["n1", "ingest"]]);
    assert.deepEqual([...index.typeOfPid], [[43, "ingest"]]);
    assert.ok(matchesWorker(debug[2]!, parseLogLine(debug[2]!), { type: "ingest" }, index), "the name's DEBUG line is about the type");
    const plain = write(false);
    assert.equal(plain.length, 1, "only the exit: DEBUG lines are off by default");
    const plainIndex = new WorkerIndex();
    for (const line of plain) plainIndex.learn(line);
    assert.deepEqual([...plainIndex.typeOfPid], [[43, "ingest"]]);
    assert.deepEqual([...plainIndex.typeOfName], []);
  });

  it("reads the postmaster's events from JSON fields and from text alike", () => {
    const event = { event: "worker-exited", type: "ingest", pid: 43, code: null, signal: "SIGKILL" } as const;
    const json: string[] = [];
    const text: string[] = [];
    new Logger({ format: "json", pid: 42, sink: (line) => json.push(line) }).event(event);
    new Logger({ format: "text", pid: 42, sink: (line) => text.push(line) }).event(event);
    assert.deepEqual(eventOf(parseLogLine(json[0]!)!), event);
    assert.deepEqual(eventOf(parseLogLine(text[0]!)!), event);
    assert.equal(eventOf(parseLogLine(JSON.stringify({ time: "t", pid: 1, level: "LOG", message: "m", event: "no-such-kind" }))!), undefined);
  });

  it("takes the last lines back through rotated files", () => {
    const file = join(dir, "back", "bgworker.log");
    const writer = new RotatingLogFile(file, { rotationSize: 120, files: 4 });
    for (let i = 0; i < 12; i += 1) writer.write(`2026-01-02 03:04:05.678 UTC [${i % 2 === 0 ? 7 : 8}] LOG:  line ${i}`);
    writer.close();
    assert.ok(existsSync(`${file}.2`));
    assert.deepEqual(lastLines(file, 5, { json: false }).lines.map((l) => l.slice(-7).trim()), ["line 7", "line 8", "line 9", "line 10", "line 11"]);
    const odd = lastLines(file, 3, { json: true, filter: { pid: 8 } }).lines.map((l) => (JSON.parse(l) as { message: string }).message);
    assert.deepEqual(odd, ["line 7", "line 9", "line 11"]);
  });
});

describe("following the log", () => {
  it("goes on from where the last lines were read, across rotations made in between", async () => {
    const file = join(dir, "resume", "bgworker.log");
    const writer = new RotatingLogFile(file, { rotationSize: 100, files: 6 });
    const line = (i: number): string => `2026-01-02 03:04:05.678 UTC [1] LOG:  n ${String(i).padStart(2, "0")}`;
    for (let i = 0; i < 3; i += 1) writer.write(line(i));
    const { lines, position } = lastLines(file, 2, { json: false });
    assert.deepEqual(lines, [line(1), line(2)]);
    // Written after that read, before following starts: two rotations' worth.
    for (let i = 3; i < 9; i += 1) writer.write(line(i));
    const got: string[] = [];
    const stop = follow(file, (l) => got.push(l), position, 10);
    for (let i = 9; i < 12; i += 1) writer.write(line(i));
    const deadline = Date.now() + 10_000;
    while (got.length < 9 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    stop();
    writer.close();
    assert.deepEqual(got, Array.from({ length: 9 }, (_, k) => line(k + 3)));
  });
});

describe("daemon", () => {
  it("moves --database URL to the environment of the detached postmaster, and drops --daemon", () => {
    const url = "postgres://app:s3cret@db/app";
    const env = { PATH: "/bin" };
    assert.deepEqual(detachedInvocation(["ext.ts", "--daemon", "--database", url, "--http", "9187"], env), {
      args: ["ext.ts", "--http", "9187"],
      env: { PATH: "/bin", [DAEMON_ENV]: "1", [DATABASE_URL_ENV]: url },
    });
    const equals = detachedInvocation(["-d", `--database=${url}`, "ext.ts"], { [DATABASE_URL_ENV]: "postgres://old" });
    assert.deepEqual(equals, { args: ["ext.ts"], env: { [DAEMON_ENV]: "1", [DATABASE_URL_ENV]: url } });
    assert.ok(!equals.args.join(" ").includes("s3cret"));
    // No --database: the environment is left as it is; after `--` everything is an extension.
    assert.deepEqual(detachedInvocation(["--pgdata", "/d", "-d", "--", "--daemon"], {}), { args: ["--pgdata", "/d", "--", "--daemon"], env: { [DAEMON_ENV]: "1" } });
    assert.equal(DATABASE_URL_ENV, "BGWORKER_DATABASE_URL", "what start reads");
    assert.deepEqual(env, { PATH: "/bin" }, "the starter's environment is not changed");
  });
});

describe("systemd unit", () => {
  it("quotes words as systemd reads them", () => {
    assert.equal(systemdQuote("/usr/bin/node"), "/usr/bin/node");
    assert.equal(systemdQuote("my dir/x.ts"), '"my dir/x.ts"');
    assert.equal(systemdQuote('a"b'), '"a\\"b"');
    assert.equal(systemdQuote("100%"), "100%%");
    assert.equal(systemdQuote("$HOME"), '"$$HOME"');
  });

  it("leaves room for the shutdown timeout before systemd kills", () => {
    const unit = systemdUnit({ name: "app", description: "d", workingDirectory: "/srv/app", execStart: ["/n", "/c", "start"], user: "app", shutdownTimeoutMs: 20_000 });
    assert.match(unit, /^TimeoutStopSec=50$/m);
    assert.match(unit, /^ExecStart=\/n \/c start$/m);
  });
});

describe("metrics", () => {
  it("names every slot's state, restarts, last exit, uptime, CPU and RSS with slot, name and type labels", async () => {
    const workers: WorkerStatusRow[] = [
      row({ slot: 0, name: "a", type: "ta", pid: 10, state: "running", restarts: 2, uptimeMs: 1500, cpuSeconds: 0.25, rssBytes: 4096 }),
      row({ slot: 1, name: "b", type: "tb", pid: null, state: "backoff", backoffMs: 100, lastExit: { code: null, signal: "SIGSEGV", at: "" } }),
    ];
    const source: OpsSource = {
      status: () => ({ postmaster: { pid: 1, phase: "consistent", database: "x", uptimeMs: 60_000, shmemBytes: 8192, maxWorkerProcesses: 4, spares: { count: 1, ready: 1, target: 1, max: 8, pssBytes: 9_437_184 }, shutdown: null }, workers }),
      onChange: () => () => undefined,
      logTail: new LogTail(),
    };
    const tracker = new StatusTracker(source);
    const text = await new OpsMetrics(tracker).text();
    tracker.close();
    for (const line of [
      'bgworker_worker_state{slot="0",name="a",type="ta",state="running"} 1',
      'bgworker_worker_state{slot="0",name="a",type="ta",state="stopped"} 0',
      'bgworker_worker_state{slot="1",name="b",type="tb",state="backoff"} 1',
      'bgworker_worker_restarts_total{slot="0",name="a",type="ta"} 2',
      'bgworker_worker_last_exit_code{slot="1",name="b",type="tb"} 139',
      'bgworker_worker_uptime_seconds{slot="0",name="a",type="ta"} 1.5',
      'bgworker_worker_cpu_seconds_total{slot="0",name="a",type="ta"} 0.25',
      'bgworker_worker_resident_memory_bytes{slot="0",name="a",type="ta"} 4096',
      'bgworker_postmaster_phase{phase="consistent"} 1',
      "bgworker_postmaster_uptime_seconds 60",
      "bgworker_shared_memory_bytes 8192",
      "bgworker_max_worker_processes 4",
    ]) {
      assert.ok(text.split("\n").includes(line), `missing: ${line}`);
    }
    assert.ok(!text.includes('bgworker_worker_uptime_seconds{slot="1"'), "no uptime without a process");
    assert.ok(!text.includes('bgworker_worker_last_exit_code{slot="0"'), "no exit code before the first exit");
    assert.match(text, /^process_cpu_user_seconds_total /m);
  });
});
