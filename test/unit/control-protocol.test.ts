/** The control protocol without sockets: framing, hello and request validation, wire definitions, errors. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BackgroundWorkerBuilder, definitionOf } from "../../src/builder.js";
import {
  clusterStatusFromWire,
  errorFromWire,
  errorToWire,
  FrameDecoder,
  MAX_FRAME_BYTES,
  parseHello,
  parseReply,
  parseRequest,
  ProtocolError,
  type Parsed,
  type Request,
} from "../../src/control/protocol.js";
import { definitionFromWire } from "../../src/control/wire-definition.js";
import { BgWorkerStartTime, decodeDatum, type WorkerDefinition } from "../../src/definition.js";
import { BackgroundWorkerStatus, BackgroundWorkerStatusError, NoFreeWorkerSlotError } from "../../src/errors.js";

const HANDLE = "bgw1:pm-1:3:7";

function definition(): WorkerDefinition {
  return definitionOf(new BackgroundWorkerBuilder("w").setLibrary("/lib.ts").setFunction("main").setArgument(5n).setExtra("hi"));
}

/** The error of a refused frame, checked to be one line. */
function refused<T>(parsed: Parsed<T>): { id: unknown; error: Error } {
  assert.equal(parsed.ok, false, "expected the frame to be refused");
  if (parsed.ok) throw new Error("unreachable");
  assert.ok(!parsed.error.message.includes("\n"), `one line: ${parsed.error.message}`);
  return parsed;
}

function request(frame: object): Request {
  const parsed = parseRequest(JSON.stringify(frame));
  if (!parsed.ok) throw parsed.error;
  return parsed.value;
}

describe("FrameDecoder", () => {
  it("splits frames across and within chunks, and skips blank lines", () => {
    const decoder = new FrameDecoder();
    assert.deepEqual(decoder.push(Buffer.from('{"a":1}\n{"b"')), [{ frame: '{"a":1}' }]);
    assert.deepEqual(decoder.push(Buffer.from(':2}\n\n{"c":3}\n')), [{ frame: '{"b":2}' }, { frame: '{"c":3}' }]);
  });

  it("keeps multi-byte characters split between chunks intact", () => {
    const decoder = new FrameDecoder();
    const bytes = Buffer.from('"é"\n');
    assert.deepEqual(decoder.push(bytes.subarray(0, 2)), []);
    assert.deepEqual(decoder.push(bytes.subarray(2)), [{ frame: '"é"' }]);
  });

  it("reports invalid UTF-8 and carries on", () => {
    const decoder = new FrameDecoder();
    assert.deepEqual(decoder.push(Buffer.from([0xff, 0x0a, 0x31, 0x0a])), [{ invalidUtf8: true }, { frame: "1" }]);
  });

  it("reports an oversized frame before its newline arrives, and stops", () => {
    const decoder = new FrameDecoder(16);
    assert.deepEqual(decoder.push(Buffer.alloc(10, 0x61)), []);
    assert.deepEqual(decoder.push(Buffer.alloc(10, 0x61)), [{ oversized: 20 }]);
    assert.deepEqual(decoder.push(Buffer.from("\n{}\n")), []);
  });

  it("accepts a frame of exactly the limit", () => {
    const decoder = new FrameDecoder(4);
    assert.deepEqual(decoder.push(Buffer.from("1234\n12345\n")), [{ frame: "1234" }, { oversized: 5 }]);
    assert.equal(MAX_FRAME_BYTES, 65536);
  });
});

describe("parseHello", () => {
  it("accepts a version 1 hello, with or without an id", () => {
    const hello = parseHello('{"v":1,"op":"hello","pid":42}');
    assert.deepEqual(hello, { ok: true, value: { v: 1, op: "hello", pid: 42 } });
    assert.deepEqual(parseHello('{"v":1,"op":"hello","pid":42,"id":0}'), { ok: true, value: { v: 1, op: "hello", pid: 42, id: 0 } });
  });

  it("refuses anything else with a message naming the problem", () => {
    assert.match(refused(parseHello("nope")).error.message, /^frame is not valid JSON: /);
    assert.match(refused(parseHello("[1]")).error.message, /^frame must be a JSON object, got array\(1\)$/);
    assert.match(refused(parseHello('{"id":1,"op":"status"}')).error.message, /first frame must be a hello .* got op "status"/);
    assert.equal(refused(parseHello('{"v":2,"op":"hello","pid":1,"id":9}')).id, 9);
    assert.match(refused(parseHello('{"v":2,"op":"hello","pid":1}')).error.message, /protocol version 2 is not supported \(this postmaster speaks version 1\)/);
    assert.match(refused(parseHello('{"v":1,"op":"hello","pid":-1}')).error.message, /pid -1 must be a process id/);
    assert.match(refused(parseHello('{"v":1,"op":"hello","pid":"1"}')).error.message, /pid "1" must be a process id/);
    assert.match(refused(parseHello('{"v":1,"op":"hello","pid":1,"x":1}')).error.message, /unknown field "x"/);
  });
});

describe("parseRequest", () => {
  it("parses every op", () => {
    assert.deepEqual(request({ id: 1, op: "status" }), { id: 1, op: "status" });
    assert.deepEqual(request({ id: "a", op: "state", handle: HANDLE }), { id: "a", op: "state", handle: { postmaster: "pm-1", slot: 3, generation: 7 } });
    assert.equal(request({ id: 2, op: "waitForStartup", handle: HANDLE }).op, "waitForStartup");
    assert.equal(request({ id: 3, op: "waitForShutdown", handle: HANDLE }).op, "waitForShutdown");
    assert.deepEqual(request({ id: 4, op: "terminate", target: 1234 }), { id: 4, op: "terminate", target: 1234 });
    assert.deepEqual(request({ id: 5, op: "terminate", target: HANDLE }), { id: 5, op: "terminate", target: { postmaster: "pm-1", slot: 3, generation: 7 } });
    assert.deepEqual(request({ id: 6, op: "stop", mode: "immediate" }), { id: 6, op: "stop", mode: "immediate" });
    assert.deepEqual(request({ id: 8, op: "reload" }), { id: 8, op: "reload" });
    assert.deepEqual(request({ id: "c", op: "clusterStatus" }), { id: "c", op: "clusterStatus" });
    const launch = request({ id: 7, op: "launch", definition: definition() });
    assert.ok(launch.op === "launch");
    assert.deepEqual(launch.definition, definition());
  });

  it("refuses bad ids, ops and fields, echoing the id when it is valid", () => {
    const cases: Array<[object, RegExp, unknown]> = [
      [{ op: "status" }, /^request has no id$/, null],
      [{ id: -1, op: "status" }, /request id -1 must be a non-negative integer/, null],
      [{ id: 1.5, op: "status" }, /request id 1.5/, null],
      [{ id: "x".repeat(65), op: "status" }, /request id "x+"… \(65 bytes\) must be/, null],
      [{ id: 1, op: "launch!" }, /^unknown op "launch!" \(expected one of status, launch, state/, 1],
      [{ id: 1, op: 5 }, /^unknown op 5/, 1],
      [{ id: 2, op: "hello", v: 1, pid: 1 }, /already said hello/, 2],
      [{ id: 3, op: "status", extra: true }, /^status: unknown field "extra"$/, 3],
      [{ id: 4, op: "state" }, /^state: handle undefined must be a string$/, 4],
      [{ id: 4, op: "state", handle: 12 }, /^state: handle 12 must be a string$/, 4],
      [{ id: 5, op: "state", handle: "bgw1:x" }, /handle "bgw1:x" is not a background worker handle/, 5],
      [{ id: 6, op: "terminate", target: 0 }, /^terminate: target 0 must be a worker pid/, 6],
      [{ id: 6, op: "terminate", target: null }, /^terminate: target null must be a worker pid or a handle string$/, 6],
      [{ id: 7, op: "stop", mode: "slow" }, /^stop: mode "slow" must be one of smart, fast, immediate$/, 7],
      [{ id: 8, op: "launch" }, /^invalid worker definition: definition undefined must be an object$/, 8],
      [{ id: 9, op: "clusterStatus", cluster: "prod" }, /^clusterStatus: unknown field "cluster"$/, 9],
      [{ id: 10, op: "clusterstatus" }, /^unknown op "clusterstatus" \(expected one of .*, reload, clusterStatus\)$/, 10],
    ];
    for (const [frame, message, id] of cases) {
      const result = refused(parseRequest(JSON.stringify(frame)));
      assert.match(result.error.message, message, JSON.stringify(frame));
      assert.equal(result.id, id, JSON.stringify(frame));
    }
  });
});

describe("definitionFromWire", () => {
  const good = (): Record<string, unknown> => ({ ...definition() });
  const bad = (patch: Record<string, unknown>, type: typeof TypeError, message: RegExp): void => {
    assert.throws(
      () => definitionFromWire({ ...good(), ...patch }),
      (error: unknown) => error instanceof type && message.test((error as Error).message) && !(error as Error).message.includes("\n"),
      JSON.stringify(patch),
    );
  };

  it("round-trips what the builder makes, with every Datum kind", () => {
    for (const arg of [null, 1.5, -3, 2n ** 63n, true, false]) {
      const made = definitionOf(new BackgroundWorkerBuilder("w").setType("t").setLibrary("pkg").setFunction("f").setArgument(arg).enableSpiAccess()
        .setStartTime(BgWorkerStartTime.ConsistentState).setRestartTime(250).enableShmemAccess().setNotifyPid(99));
      const rebuilt = definitionFromWire(JSON.parse(JSON.stringify(made)));
      assert.deepEqual(rebuilt, made);
      assert.equal(decodeDatum(rebuilt.argument), arg);
      assert.ok(Object.isFrozen(rebuilt));
    }
  });

  it("applies the builder's own rules and messages", () => {
    bad({ name: "" }, RangeError, /^invalid worker definition: BackgroundWorkerBuilder: name "" must not be empty$/);
    bad({ type: "x".repeat(96) }, RangeError, /setType: type .* must be at most 95 UTF-8 bytes/);
    bad({ restartTimeMs: 86_400_001 }, RangeError, /^invalid worker definition: setRestartTime: restart time 86400001 must be from 0/);
    bad({ startTime: 7 }, TypeError, /setStartTime: start time 7 must be/);
    bad({ spi: true, startTime: 0 }, TypeError, /cannot request database access with start time PostmasterStart/);
    bad({ notifyPid: -2 }, RangeError, /setNotifyPid: notify pid -2/);
    bad({ argument: { kind: "number", value: 1e400 } }, RangeError, /setArgument: argument Infinity must be a finite number/);
    bad({ argument: { kind: "number", value: "1" } }, TypeError, /kind "number" must have a number value/);
    bad({ argument: { kind: "bigint", value: String(2n ** 64n) } }, RangeError, /does not fit in a 64-bit Datum/);
  });

  it("refuses wrong JSON shapes naming the field", () => {
    bad({ name: 5 }, TypeError, /^invalid worker definition: name 5 must be a string$/);
    bad({ spi: "yes" }, TypeError, /^invalid worker definition: spi "yes" must be a boolean$/);
    bad({ restartTimeMs: "10" }, TypeError, /restartTimeMs "10" must be null or a number/);
    bad({ argument: "x" }, TypeError, /argument "x" must be an encoded Datum/);
    bad({ argument: { kind: "string", value: "x" } }, TypeError, /argument.kind "string" must be "null", "number", "bigint" or "boolean"/);
    bad({ argument: { kind: "bigint", value: "12x" } }, TypeError, /must have a decimal integer string value/);
    bad({ argument: { kind: "null", value: 1 } }, TypeError, /of kind "null" must have no value/);
    bad({ extra: "***" }, TypeError, /extra "\*\*\*" must be canonical base64 of at most 128 bytes/);
    bad({ extra: Buffer.alloc(129).toString("base64") }, RangeError, /setExtra: extra of 129 bytes must be at most 128 bytes/);
    bad({ extra: "A".repeat(100_000) }, TypeError, /extra .* \(100000 bytes\) must be canonical base64/);
    bad({ surprise: 1 }, TypeError, /^invalid worker definition: unknown field "surprise"$/);
    const missing = good();
    delete missing.library;
    assert.throws(() => definitionFromWire(missing), /^TypeError: invalid worker definition: field "library" is missing$/);
    assert.throws(() => definitionFromWire([]), /definition array\(0\) must be an object/);
  });
});

describe("errors on the wire", () => {
  it("re-creates the classes the client knows", () => {
    const slot = errorFromWire(errorToWire(new NoFreeWorkerSlotError("no free slot")));
    assert.ok(slot instanceof NoFreeWorkerSlotError);
    assert.equal(slot.message, "no free slot");
    const status = errorFromWire(errorToWire(new BackgroundWorkerStatusError(BackgroundWorkerStatus.Untracked, "u")));
    assert.ok(status instanceof BackgroundWorkerStatusError);
    assert.equal(status.status, BackgroundWorkerStatus.Untracked);
    assert.ok(errorFromWire(errorToWire(new TypeError("t"))) instanceof TypeError);
    assert.ok(errorFromWire(errorToWire(new RangeError("r"))) instanceof RangeError);
    assert.ok(errorFromWire(errorToWire(new ProtocolError("p"))) instanceof ProtocolError);
    const foreign = errorFromWire({ name: "AbortError", message: "aborted" });
    assert.equal(foreign.name, "AbortError");
    assert.equal(foreign.message, "aborted");
    assert.ok(errorFromWire({ nope: 1 }) instanceof ProtocolError);
  });

  it("parses replies and refuses non-replies", () => {
    assert.deepEqual(parseReply('{"id":3,"ok":true,"result":{"x":1}}'), { id: 3, ok: true, result: { x: 1 } });
    assert.deepEqual(parseReply('{"id":null,"ok":false,"error":{"name":"ProtocolError","message":"m"}}'), {
      id: null,
      ok: false,
      error: { name: "ProtocolError", message: "m", code: "ERR_BGWORKER_PROTOCOL" },
    });
    assert.throws(() => parseReply("{}"), ProtocolError);
    assert.throws(() => parseReply("x"), ProtocolError);
  });
});

describe("clusterStatus replies", () => {
  const good = {
    cluster: "prod",
    nodeId: "a",
    serverNow: 1_900_000_000_000.5,
    nodes: [{ nodeId: "a", host: "h", pid: 41, heartbeatAt: 1_899_999_999_600, live: true }],
    leases: [
      { worker: "ledger", holder: "a", generation: "1", expiresAt: 1_900_000_004_000 },
      { worker: "free", holder: null, generation: "7", expiresAt: 1_899_999_990_000 },
    ],
  };

  it("reads a cluster status as the server sends it, through a reply frame", () => {
    const reply = parseReply(JSON.stringify({ id: 4, ok: true, result: good }));
    assert.ok(reply.ok);
    assert.deepEqual(clusterStatusFromWire(reply.result), good);
    assert.deepEqual(clusterStatusFromWire({ ...good, nodes: [], leases: [] }), { ...good, nodes: [], leases: [] });
  });

  it("refuses a malformed one with a ProtocolError naming the field", () => {
    const lease = good.leases[0]!;
    const node = good.nodes[0]!;
    const cases: Array<[unknown, RegExp]> = [
      [null, /^reply: null is not a cluster status$/],
      [[], /^reply: array\(0\) is not a cluster status$/],
      [{ ...good, cluster: 5 }, /^reply: cluster status: cluster 5 is not valid$/],
      [{ ...good, serverNow: "now" }, /^reply: cluster status: serverNow "now" is not valid$/],
      [{ ...good, nodes: {} }, /^reply: cluster status: nodes object is not valid$/],
      [{ ...good, nodes: [1] }, /^reply: cluster status: nodes\[0\] 1 is not valid$/],
      [{ ...good, nodes: [{ ...node, pid: 0 }] }, /^reply: cluster status: nodes\[0\]\.pid 0 is not valid$/],
      [{ ...good, nodes: [{ ...node, live: "yes" }] }, /^reply: cluster status: nodes\[0\]\.live "yes" is not valid$/],
      [{ ...good, nodes: [{ ...node, heartbeatAt: null }] }, /^reply: cluster status: nodes\[0\]\.heartbeatAt null is not valid$/],
      [{ ...good, leases: [lease, { ...lease, generation: 2 }] }, /^reply: cluster status: leases\[1\]\.generation 2 is not valid$/],
      [{ ...good, leases: [{ ...lease, generation: "-1" }] }, /^reply: cluster status: leases\[0\]\.generation "-1" is not valid$/],
      [{ ...good, leases: [{ ...lease, holder: 3 }] }, /^reply: cluster status: leases\[0\]\.holder 3 is not valid$/],
      [{ ...good, leases: [{ ...lease, expiresAt: "-Infinity" }] }, /^reply: cluster status: leases\[0\]\.expiresAt "-Infinity" is not valid$/],
    ];
    for (const [value, message] of cases) {
      assert.throws(() => clusterStatusFromWire(value), (error: unknown) => error instanceof ProtocolError && message.test(error.message), JSON.stringify(value));
    }
  });
});
