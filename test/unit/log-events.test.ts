/** The postmaster's log events: each kind's exact text (users and tests read it), its JSON form, and reading text back. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { levelOf, READABLE_KINDS, readEvent, renderEvent, type LogEvent, type LogEventKind } from "../../src/log-events.js";
import { Logger, type LogRecord } from "../../src/log.js";

/** One event of every kind and its line: the mapped type makes a new kind without a line here a compile error. */
const LINES: { readonly [K in LogEventKind]: readonly [Extract<LogEvent, { event: K }>, string] } = {
  "worker-registering": [{ event: "worker-registering", name: "n" }, 'registering background worker "n"'],
  "worker-started": [{ event: "worker-started", name: "n", pid: 43 }, 'started background worker "n" (PID 43)'],
  "fork-failed": [{ event: "fork-failed", name: "n", reason: "spawn EAGAIN" }, 'could not fork background worker process "n": spawn EAGAIN'],
  "worker-exited": [{ event: "worker-exited", type: "t", pid: 43, code: 1, signal: null }, 'background worker "t" (PID 43) exited with exit code 1'],
  "restart-damped": [
    { event: "restart-damped", type: "t", failures: 5, withinMs: 1000, delayMs: 100 },
    'background worker "t" failed 5 times in a row within 1000 ms of starting; delaying its restart by 100 ms',
  ],
  "crash-stopping-others": [{ event: "crash-stopping-others" }, "terminating any other active server processes that use shared memory"],
  "shmem-reinitializing": [{ event: "shmem-reinitializing" }, "all shared-memory workers terminated; reinitializing shared memory"],
  "worker-restart-requested": [{ event: "worker-restart-requested", type: "t", pid: 43 }, 'restarting background worker "t" (PID 43) at administrator request'],
  "reload-requested": [{ event: "reload-requested" }, "received SIGHUP, reloading configuration files"],
  "shutdown-requested": [{ event: "shutdown-requested", mode: "smart" }, "received smart shutdown request"],
  "startup-failed": [{ event: "startup-failed", reason: "boom" }, "postmaster start-up failed: boom"],
  "smart-shutdown-stopping-others": [{ event: "smart-shutdown-stopping-others" }, "no dynamic background workers left; stopping the others"],
  "worker-unregistering": [{ event: "worker-unregistering", name: "n" }, 'unregistering background worker "n"'],
  "worker-registered": [{ event: "worker-registered", name: "n", extension: "./ext.ts" }, 'registered background worker "n" from extension "./ext.ts"'],
  "stale-segment-removed": [{ event: "stale-segment-removed", segment: "/bgw.1" }, 'removed shared memory segment "/bgw.1" left by a postmaster that is gone'],
  "database-served": [{ event: "database-served", description: "embedded PostgreSQL" }, "serving embedded PostgreSQL"],
  "postmaster-ready": [{ event: "postmaster-ready", extensions: 1, staticWorkers: 2 }, "postmaster ready: 1 extension(s), 2 static worker(s)"],
  "phase-changed": [{ event: "phase-changed", phase: "running", reason: "accepting connections" }, "database phase is now running: accepting connections"],
  "database-unreachable": [{ event: "database-unreachable", reason: "refused" }, "database cannot be reached: refused"],
  "cluster-scope-without-cluster": [
    { event: "cluster-scope-without-cluster", name: "n" },
    'background worker "n" has scope "cluster", but this postmaster is not in a cluster (--cluster): it runs here as a host-scoped worker',
  ],
  "cluster-joined": [{ event: "cluster-joined", cluster: "c", nodeId: "a", backendPid: 7 }, 'joined cluster "c" as node "a" (cluster session PID 7)'],
  "cluster-session-lost": [{ event: "cluster-session-lost", cluster: "c", reason: "EOF" }, 'cluster "c": the cluster session was lost: EOF'],
  "cluster-session-failed": [{ event: "cluster-session-failed", cluster: "c", reason: "refused" }, 'cluster "c": cannot open the cluster session: refused'],
  "lease-acquired": [{ event: "lease-acquired", worker: "w", generation: "3" }, 'acquired the cluster lease of background worker "w" (generation 3)'],
  "leadership-lost": [
    { event: "leadership-lost", worker: "w", generation: "3", reason: "r" },
    'leadership lost: background worker "w" (generation 3) is being stopped: r',
  ],
  "lease-renewal-failed": [
    { event: "lease-renewal-failed", worker: "w", generation: "3", reason: "r" },
    'could not renew the cluster lease of background worker "w" (generation 3): r',
  ],
  "lease-released": [{ event: "lease-released", worker: "w", generation: "3" }, 'released the cluster lease of background worker "w" (generation 3)'],
  "lease-release-failed": [
    { event: "lease-release-failed", worker: "w", generation: "3", reason: "r" },
    'could not release the cluster lease of background worker "w" (generation 3); it expires by itself: r',
  ],
  "server-reloaded": [{ event: "server-reloaded" }, "signaled the PostgreSQL server to reload its configuration files"],
  "server-reload-failed": [{ event: "server-reload-failed", error: "EPERM" }, "could not reload the PostgreSQL server: EPERM"],
  "malformed-request": [{ event: "malformed-request", pid: 43, reason: "bad" }, "malformed request from background worker (PID 43): bad"],
  "postmaster-failed": [{ event: "postmaster-failed", error: "no segment" }, "no segment; shutting down"],
  "shutdown-problem": [{ event: "shutdown-problem", error: "x" }, "during shutdown: x"],
  "postmaster-shut-down": [{ event: "postmaster-shut-down" }, "postmaster shut down"],
  "worker-terminating": [{ event: "worker-terminating", type: "t" }, 'terminating background worker "t" due to administrator command'],
};

describe("log events", () => {
  it("render every kind to PostgreSQL's wording", () => {
    for (const [event, line] of Object.values(LINES)) assert.equal(renderEvent(event), line, event.event);
  });

  it("render the other wordings of exits and restarts", () => {
    const exited = (code: number | null, signal: string | null): string => renderEvent({ event: "worker-exited", type: "t", pid: 9, code, signal });
    assert.equal(exited(null, "SIGKILL"), 'background worker "t" (PID 9) was terminated by signal 9: Killed');
    assert.equal(exited(null, "SIGSEGV"), 'background worker "t" (PID 9) was terminated by signal 11: Segmentation fault');
    assert.equal(exited(null, "SIGWINCH"), 'background worker "t" (PID 9) was terminated by signal SIGWINCH: SIGWINCH');
    assert.equal(exited(null, null), 'background worker "t" (PID 9) exited with exit code unknown');
    assert.equal(renderEvent({ event: "worker-restart-requested", type: "t", pid: null }), 'restarting background worker "t" now at administrator request');
  });

  it("read back from text the kinds that tie a worker to a pid, and nothing else", () => {
    assert.deepEqual([...READABLE_KINDS].sort(), ["worker-exited", "worker-restart-requested", "worker-started", "worker-terminating"]);
    const samples: LogEvent[] = [
      ...READABLE_KINDS.map((kind) => LINES[kind][0]),
      { event: "worker-exited", type: 'odd "type" (PID 1)', pid: 9, code: null, signal: "SIGKILL" },
      { event: "worker-exited", type: "t", pid: 9, code: null, signal: "SIGWINCH" },
      { event: "worker-exited", type: "t", pid: 9, code: null, signal: null },
      { event: "worker-restart-requested", type: "t", pid: null },
    ];
    for (const event of samples) assert.deepEqual(readEvent(renderEvent(event)), event, renderEvent(event));
    assert.equal(readEvent("postmaster ready: 1 extension(s), 2 static worker(s)"), undefined);
  });

  it("give each kind its level", () => {
    assert.equal(levelOf(LINES["worker-started"][0]), "DEBUG");
    assert.equal(levelOf(LINES["startup-failed"][0]), "FATAL");
    assert.equal(levelOf(LINES["malformed-request"][0]), "WARNING");
    assert.equal(levelOf(LINES["worker-exited"][0]), "LOG");
  });

  it("carry their kind and fields in a JSON line, and only the text in a text line", () => {
    const json: string[] = [];
    const text: string[] = [];
    const worker = { name: "n", type: "t", pid: 43 };
    new Logger({ format: "json", pid: 42, sink: (line) => json.push(line) }).event(LINES["worker-exited"][0], { worker });
    new Logger({ format: "text", pid: 42, sink: (line) => text.push(line) }).event(LINES["worker-exited"][0], { worker });
    const record = JSON.parse(json[0]!) as LogRecord;
    assert.deepEqual({ ...record, time: "T" }, {
      time: "T",
      pid: 42,
      level: "LOG",
      message: 'background worker "t" (PID 43) exited with exit code 1',
      worker,
      event: "worker-exited",
      fields: { type: "t", pid: 43, code: 1, signal: null },
    });
    assert.match(text[0]!, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC \[42\] LOG: {2}background worker "t" \(PID 43\) exited with exit code 1$/);
  });
});
