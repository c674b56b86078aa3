/**
 * One acceptance of SPEC §4 for both modes: the cases, what each must record, and how a runner triggers them.
 * The workers (./fixtures) write their observations into `acceptance_results`; a runner starts the extension
 * in its mode, calls `checkCase()` for each case, and gets the same assertions on the same SQL results.
 *
 * Not here, because they differ by design (docs/in-server.md, "What differs from `bgworker start`"):
 * - restart times: in-server they are whole seconds, rounded up, so every restart time here is 1000 ms;
 * - restart-storm damping (SPEC §6): only the bgworker postmaster has it;
 * - handles: PostgreSQL's in-server (slot and generation), and a restartable worker waiting for its restart is
 *   Stopped there where the bgworker postmaster says NotYetStarted. "Started" itself is not a difference: it is
 *   SPEC §5's in both modes (the worker's function entered), so a handle case that rests on Started alone
 *   (waitForStartup() resolving once the function runs) is common to both; none is here yet;
 * - a worker's pid: the bgworker postmaster's Node process out-of-server, the backend in-server (its Node process
 *   is the backend's child), so each runner says how it finds a worker's pid (`workerPid`);
 * - pg_terminate_backend() of a worker that attached SIGTERM: out-of-server it ends the worker's session (a
 *   separate backend) while the worker goes on; in-server the backend is the worker and its SQL goes on. The
 *   SIGTERM case here signals the worker's pid instead, which is the same in both;
 * - `backend_type` in pg_stat_activity: the type in-server, `client backend` out-of-server, where the worker
 *   is a client session (`application_name` is the type in both): the one per-mode expectation below.
 */
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { ACCEPTANCE_WORKERS, typeOf } from "./fixtures/extension.js";

export type Mode = "out-of-server" | "in-server";

/** Generous: up to 13 Node workers boot at once on a loaded 2-core machine. Nothing waits for a fixed time. */
export const ACCEPTANCE_PATIENCE_MS = 120_000;

/** The database both modes serve (`--database .../acceptance`, `bgworker.database = 'acceptance'`). */
export const ACCEPTANCE_DATABASE = "acceptance";

/** Made before any worker starts, in both modes. */
export const ACCEPTANCE_SCHEMA = `
  create table acceptance_results ("case" text not null, key text not null, value text not null, primary key ("case", key));
  create table acceptance_state (key text primary key, value text not null);
  create table acceptance_tx (v int primary key);
  create table acceptance_spi (id int primary key, label text);
`;

/** What a runner gives the cases: SQL on the served database, and how its mode names a worker's process. */
export interface ModeRunner {
  readonly mode: Mode;
  query<R extends Record<string, unknown>>(sql: string, params?: unknown[]): Promise<R[]>;
  /** The pid that `setLatch(pid)` and signals take for this worker (see above: it differs by mode). */
  workerPid(type: string): Promise<number>;
}

/** The same in both modes, except where a case says per mode. */
type Expected = string | Readonly<Record<Mode, string>>;

export interface AcceptanceCase {
  /** The `case` column its workers write. */
  readonly name: string;
  readonly title: string;
  readonly expected: Readonly<Record<string, Expected>>;
  /** What the runner does for it (the same SQL and signals in both modes). */
  readonly trigger?: (runner: ModeRunner) => Promise<void>;
}

function type(name: string): string {
  const worker = ACCEPTANCE_WORKERS.find((w) => w.name === name);
  if (worker === undefined) throw new Error(`no acceptance worker named "${name}"`);
  return typeOf(worker);
}

/** Polls `probe` until it gives a value (a table row, a pg_stat_activity row). */
export async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = ACCEPTANCE_PATIENCE_MS): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

async function stateOf(runner: ModeRunner, key: string): Promise<string> {
  return until(`acceptance_state "${key}"`, async () => {
    const [row] = await runner.query<{ value: string }>("select value from acceptance_state where key = $1", [key]);
    return row?.value;
  });
}

/** Signals the worker of this type once it has marked itself ready (its handlers are attached by then). */
async function signalWhenReady(runner: ModeRunner, ready: string, workerName: string, signal: NodeJS.Signals): Promise<void> {
  await stateOf(runner, ready);
  process.kill(await runner.workerPid(type(workerName)), signal);
}

export const CASES: readonly AcceptanceCase[] = [
  {
    name: "spi",
    title: "SPI: parameters and result types, run/getOne/select, SpiError, and the worker's pg_stat_activity row",
    expected: {
      "argument (none set)": "object:null",
      "select: int_param": "number:41",
      "select: text_param": "string:héllo wörld",
      "select: bigint_param": "bigint:9007199254740993",
      "select: null_param": "object:null",
      "select: int_array_param": "array:[1,2,3]",
      "select: json_param": 'object:{"a":[1,"b"]}',
      "select: jsonb_param": 'object:{"k":true}',
      "select: untyped_param": "string:text by default",
      "select: inferred_sum": "number:42",
      "select: one": "number:1",
      "select: int8": "bigint:2",
      "select: float8": "number:1.5",
      "select: numeric": "string:12.50",
      "select: bool": "boolean:true",
      "select: null_text": "object:null",
      "select: int8_array": 'array:["1n","2n"]',
      "select: text_array": 'array:["a","b c"]',
      "select: json": 'object:{"k":[1,"v"]}',
      "select: timestamptz": "date:2026-01-02T03:04:05.000Z",
      "select: rows": "1",
      "run: rows inserted": "number:3",
      "run: rows updated": "number:2",
      "getOne: a text": "string:row 3!",
      "getOne: no row": "object:null",
      "select: no rows": "array:[]",
      "error: SpiError": "true",
      "error: code and sqlstate": "23505 23505",
      "error: table and constraint": "acceptance_spi acceptance_spi_pkey",
      "outside transaction()": "threw ERR_BGWORKER_NOT_IN_TRANSACTION",
      "pg_stat_activity: application_name": "acceptance spi",
      // The one difference by design: in-server the worker is a background worker backend; out-of-server
      // its session is a client connection (application_name shows the type, as SPEC §4 says).
      "pg_stat_activity: backend_type": { "out-of-server": "client backend", "in-server": "acceptance spi" },
      "pg_stat_activity: datname": ACCEPTANCE_DATABASE,
      "pg_stat_activity: usename": "postgres",
    },
  },
  {
    name: "transactions",
    title: "transaction(): commit, a throw rolls back and rethrows, a failed statement gives 25P02 until rollback",
    expected: {
      "commit: transaction() returns fn's value": "string:returned",
      "commit: rows after": "bigint:1",
      "throw: transaction() rejects with the thrown error": "true",
      "throw: rows after the rollback": "bigint:1",
      "failed statement: codes (statement, next statement, transaction())": "22012 25P02 25P02",
      "failed statement: rows after the rollback": "bigint:1",
      "the next transaction": "string:works",
    },
  },
  {
    name: "cancel",
    title: "pg_cancel_backend() on the worker's session: SpiError 57014, and the worker carries on",
    expected: {
      "error: SpiError": "true",
      "error: code": "57014",
      "error: message": "canceling statement due to user request",
      "the next transaction": "string:works",
    },
    async trigger(runner) {
      const pid = Number(await stateOf(runner, "cancel.session_pid"));
      await until("the cancel worker's pg_sleep to run", async () => {
        const rows = await runner.query("select 1 from pg_stat_activity where pid = $1 and state = 'active' and query ~ 'pg_sleep'", [pid]);
        return rows.length === 1 ? true : undefined;
      });
      const [row] = await runner.query<{ sent: boolean }>("select pg_cancel_backend($1) as sent", [pid]);
      assert.equal(row?.sent, true);
    },
  },
  {
    name: "sighup",
    title: "SIGHUP, attached: waitLatch() wakes, sighupReceived() is set once",
    expected: {
      "waitLatch() on SIGHUP": "true",
      "sighupReceived()": "true",
      "sighupReceived() read again": "false",
      "sigtermReceived()": "false",
    },
    trigger: (runner) => signalWhenReady(runner, "sighup.ready", "acceptance sighup", "SIGHUP"),
  },
  {
    name: "sigterm",
    title: "SIGTERM, attached: waitLatch() returns false and keeps returning false, sigtermReceived() is set once, SQL goes on",
    expected: {
      "waitLatch()": "false",
      "sigtermReceived()": "true",
      "sigtermReceived() read again": "false",
      "waitLatch() after the SIGTERM": "false",
      "sighupReceived()": "false",
      "SQL after the SIGTERM": "string:works",
    },
    trigger: (runner) => signalWhenReady(runner, "sigterm.ready", "acceptance sigterm", "SIGTERM"),
  },
  {
    name: "terminate",
    title: "pg_terminate_backend() before attachSignalHandlers(): exit 1, restarted after its restart time",
    expected: {
      "run 1": "waiting, SIGTERM not attached",
      "run 2": "restarted after its restart time: true",
    },
    async trigger(runner) {
      const pid = Number(await stateOf(runner, "terminate.session_pid"));
      const [row] = await runner.query<{ sent: boolean }>("select pg_terminate_backend($1) as sent", [pid]);
      assert.equal(row?.sent, true);
    },
  },
  {
    name: "latch",
    title: "setLatch(pid) of another worker wakes its waitLatch()",
    expected: {
      "waiter woke after setLatch(pid)": "true",
      "setter: setLatch(pid)": "returned",
    },
    async trigger(runner) {
      await stateOf(runner, "latch.waiting");
      const pid = await runner.workerPid(type("acceptance latch waiter"));
      await runner.query("insert into acceptance_state (key, value) values ('latch.waiter_pid', $1)", [String(pid)]);
    },
  },
  ...(
    [
      ["bigint", "bigint:9007199254740993", '"extra text: ünïcode ✓"', Buffer.from("extra text: ünïcode ✓").toString("hex")],
      ["number", "number:-42.5", JSON.stringify(Buffer.from([0, 255, 1, 128]).toString("utf8")), "00ff0180"],
      ["boolean", "boolean:true", '""', ""],
    ] as const
  ).map(
    ([kind, argument, extra, bytes]): AcceptanceCase => ({
      name: `args ${kind}`,
      title: `the argument (a ${kind}, bgw_main_arg) and the extra data (bgw_extra) reach the worker unchanged`,
      expected: {
        argument,
        "getArgument()": argument,
        "getExtra()": extra,
        "getExtraBytes()": bytes,
        "getName()": `acceptance args ${kind}`,
        "getType()": `acceptance args_${kind}`,
      },
    }),
  ),
  {
    name: "exit",
    title: "exit code 1 is restarted after its restart time; exit code 0 is not restarted",
    expected: {
      "exit 1: restarted after its restart time": "true",
      "exit 1: restarts since the exit-0 worker ended": "2",
      "exit 0: runs": "1",
    },
  },
];

/** Triggers the case, waits until every expected key is recorded, then compares the case's rows with its expectations. */
export async function checkCase(runner: ModeRunner, acceptance: AcceptanceCase): Promise<void> {
  await acceptance.trigger?.(runner);
  const keys = Object.keys(acceptance.expected);
  const recorded = await until(`case "${acceptance.name}" to record ${keys.join(", ")}`, async () => {
    const rows = await runner.query<{ key: string; value: string }>('select key, value from acceptance_results where "case" = $1', [acceptance.name]);
    const map = Object.fromEntries(rows.map((r) => [r.key, r.value]));
    // Done when every expected key is there, or at once when an unexpected one is (a worker took another path).
    return keys.every((key) => key in map) || Object.keys(map).some((key) => !(key in acceptance.expected)) ? map : undefined;
  });
  const expected = Object.fromEntries(Object.entries(acceptance.expected).map(([key, value]) => [key, typeof value === "string" ? value : value[runner.mode]]));
  assert.deepEqual(recorded, expected, `case "${acceptance.name}" in ${runner.mode} mode`);
}
