/** BackgroundWorkerBuilder: defaults, and every validation rule fed a bad value. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BackgroundWorkerBuilder, definitionOf } from "../../src/builder.js";
import { withInit, type InitContext } from "../../src/context.js";
import { BgWorkerStartTime, decodeDatum, type WorkerDefinition } from "../../src/definition.js";

const base = () => new BackgroundWorkerBuilder("w").setLibrary("./lib.ts").setFunction("main");

/** Asserts `fn` throws `type` with exactly `message`, on one line, and (when given) `code`. */
function throwsLine(fn: () => unknown, type: typeof TypeError | typeof RangeError | typeof Error, message: string, code?: string): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof type, `expected ${type.name}, got ${String(error)}`);
    assert.equal(error.constructor, type, `exactly ${type.name}`);
    assert.equal((error as Error).message, message);
    assert.ok(!(error as Error).message.includes("\n"), "one line");
    if (code !== undefined) assert.equal((error as { code?: unknown }).code, code);
    assert.match(String((error as { code?: unknown }).code), /^ERR_BGWORKER_[A-Z_]+$/, "every error has a code");
    return true;
  });
}

const WRONG_KIND = "ERR_BGWORKER_INVALID_VALUE";
const OUT_OF_RANGE = "ERR_BGWORKER_VALUE_OUT_OF_RANGE";

async function registered(fn: () => void): Promise<{ definitions: WorkerDefinition[]; startups: number }> {
  const definitions: WorkerDefinition[] = [];
  let startups = 0;
  const context: InitContext = {
    extension: "/ext/extension.ts",
    registerStatic: (definition, startup) => {
      definitions.push(definition);
      if (startup !== undefined) startups += 1;
    },
    requestShmem: () => undefined,
  };
  await withInit(context, fn);
  return { definitions, startups };
}

describe("BackgroundWorkerBuilder defaults", () => {
  it("has pgrx's defaults: type = name, PostmasterStart, never restart, null argument, empty extra", async () => {
    const { definitions } = await registered(() => BackgroundWorkerBuilder.new("ticker").setFunction("main").load());
    assert.deepEqual(definitions, [
      {
        name: "ticker",
        type: "ticker",
        library: "/ext/extension.ts",
        function: "main",
        startTime: BgWorkerStartTime.PostmasterStart,
        restartTimeMs: null,
        argument: { kind: "null" },
        extra: "",
        spi: false,
        shmem: false,
        notifyPid: 0,
        scope: "host",
      },
    ]);
    assert.ok(Object.isFrozen(definitions[0]));
  });

  it("keeps the argument's JavaScript type", () => {
    for (const value of [42, -1.5, 123n, 2n ** 64n - 1n, true, false, null]) {
      assert.deepEqual(decodeDatum(definitionOf(base().setArgument(value)).argument), value);
    }
    assert.equal(decodeDatum(definitionOf(base().setArgument()).argument), null);
  });

  it("enableSpiAccess moves the start time to RecoveryFinished; a later setStartTime overrides it", () => {
    assert.equal(definitionOf(base().enableSpiAccess()).startTime, BgWorkerStartTime.RecoveryFinished);
    assert.equal(
      definitionOf(base().enableSpiAccess().setStartTime(BgWorkerStartTime.ConsistentState)).startTime,
      BgWorkerStartTime.ConsistentState,
    );
  });

  it("carries extra as bytes, from a string or a Uint8Array, up to 128 bytes", () => {
    const bytes = new Uint8Array(128).fill(7);
    assert.equal(Buffer.from(definitionOf(base().setExtra(bytes)).extra, "base64").length, 128);
    assert.equal(Buffer.from(definitionOf(base().setExtra("héllo")).extra, "base64").toString(), "héllo");
  });

  it("passes the shared memory startup hook to the postmaster", async () => {
    const { definitions, startups } = await registered(() => base().enableShmemAccess(() => undefined).load());
    assert.equal(definitions[0]?.shmem, true);
    assert.equal(startups, 1);
  });
});

describe("BackgroundWorkerBuilder validation", () => {
  const long = "x".repeat(96);
  it("name and type: non-empty, at most 95 UTF-8 bytes", () => {
    // Empty is a length rule: RangeError, as too long is.
    throwsLine(() => new BackgroundWorkerBuilder(""), RangeError, 'BackgroundWorkerBuilder: name "" must not be empty', OUT_OF_RANGE);
    throwsLine(() => BackgroundWorkerBuilder.new(""), RangeError, 'BackgroundWorkerBuilder.new: name "" must not be empty', OUT_OF_RANGE);
    throwsLine(
      () => new BackgroundWorkerBuilder(long),
      RangeError,
      `BackgroundWorkerBuilder: name "${"x".repeat(40)}"… (96 bytes) must be at most 95 UTF-8 bytes`,
      "ERR_BGWORKER_NAME_TOO_LONG",
    );
    throwsLine(() => BackgroundWorkerBuilder.new(7 as unknown as string), TypeError, "BackgroundWorkerBuilder.new: name 7 must be a string", WRONG_KIND);
    throwsLine(() => new BackgroundWorkerBuilder("a\0b"), TypeError, 'BackgroundWorkerBuilder: name "a\\u0000b" must not contain a NUL character', WRONG_KIND);
    // 32 three-byte characters are 96 bytes: counted in bytes, not characters.
    throwsLine(
      () => base().setType("€".repeat(32)),
      RangeError,
      `setType: type "${"€".repeat(32)}" (96 bytes) must be at most 95 UTF-8 bytes`,
      "ERR_BGWORKER_NAME_TOO_LONG",
    );
    throwsLine(() => base().setType(""), RangeError, 'setType: type "" must not be empty', OUT_OF_RANGE);
    throwsLine(() => base().setType(null as unknown as string), TypeError, "setType: type null must be a string", WRONG_KIND);
    assert.equal(definitionOf(base().setType("x".repeat(95))).type.length, 95);
  });

  it("function: set, non-empty, at most 95 bytes", () => {
    throwsLine(() => base().setFunction(""), RangeError, 'setFunction: function "" must not be empty', OUT_OF_RANGE);
    throwsLine(() => base().setFunction("f".repeat(96)), RangeError, `setFunction: function "${"f".repeat(40)}"… (96 bytes) must be at most 95 UTF-8 bytes`, "ERR_BGWORKER_NAME_TOO_LONG");
    throwsLine(() => base().setFunction(1 as unknown as string), TypeError, "setFunction: function 1 must be a string", WRONG_KIND);
    throwsLine(
      () => definitionOf(new BackgroundWorkerBuilder("w").setLibrary("./l.ts")),
      TypeError,
      'launch: function of background worker "w" is not set: call setFunction(name)',
      "ERR_BGWORKER_MISSING_FIELD",
    );
  });

  it("library: a non-empty specifier, required for loadDynamic", async () => {
    throwsLine(() => base().setLibrary(""), RangeError, 'setLibrary: library "" must be a non-empty module specifier', OUT_OF_RANGE);
    throwsLine(() => base().setLibrary(3 as unknown as string), TypeError, "setLibrary: library 3 must be a module specifier (a string)", WRONG_KIND);
    await assert.rejects(new BackgroundWorkerBuilder("w").setFunction("main").loadDynamic(), {
      name: "TypeError",
      message: 'loadDynamic: library of background worker "w" is not set: call setLibrary(module)',
      code: "ERR_BGWORKER_MISSING_FIELD",
    });
  });

  it("extra: at most 128 bytes, string or Uint8Array", () => {
    throwsLine(() => base().setExtra("y".repeat(129)), RangeError, "setExtra: extra of 129 bytes must be at most 128 bytes", OUT_OF_RANGE);
    throwsLine(() => base().setExtra(12 as unknown as string), TypeError, "setExtra: extra 12 must be a string or a Uint8Array", WRONG_KIND);
  });

  it("restart time: null or an integer from 0 to 86,400,000 ms; a number outside that is a RangeError, anything else a TypeError", () => {
    throwsLine(() => base().setRestartTime(-1), RangeError, "setRestartTime: restart time -1 must be from 0 to 86400000 ms (one day), or null", OUT_OF_RANGE);
    throwsLine(() => base().setRestartTime(86_400_001), RangeError, "setRestartTime: restart time 86400001 must be from 0 to 86400000 ms (one day), or null", OUT_OF_RANGE);
    // A non-integer where an integer is required is out of range, as node's ERR_OUT_OF_RANGE has it.
    for (const bad of [1.5, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      throwsLine(
        () => base().setRestartTime(bad),
        RangeError,
        `setRestartTime: restart time ${bad} must be an integer number of milliseconds (from 0 to 86400000), or null`,
        OUT_OF_RANGE,
      );
    }
    throwsLine(() => base().setRestartTime("10" as unknown as number), TypeError, 'setRestartTime: restart time "10" must be null or an integer number of milliseconds', WRONG_KIND);
    throwsLine(() => base().setRestartTime(undefined as unknown as number), TypeError, "setRestartTime: restart time undefined must be null or an integer number of milliseconds", WRONG_KIND);
    assert.equal(definitionOf(base().setRestartTime(null)).restartTimeMs, null);
    assert.equal(definitionOf(base().setRestartTime(0)).restartTimeMs, 0);
    assert.equal(definitionOf(base().setRestartTime(250)).restartTimeMs, 250);
  });

  it("argument: by-value Datums only, finite numbers, 64-bit bigints", () => {
    const why = "a worker is another process, so pass a small value, use setExtra() for up to 128 bytes, or an index into shared memory";
    throwsLine(() => base().setArgument("hello" as never), TypeError, `setArgument: argument "hello" is not a by-value Datum (number, bigint, boolean or null): ${why}`);
    throwsLine(() => base().setArgument({ a: 1 } as never), TypeError, `setArgument: argument object is not a by-value Datum (number, bigint, boolean or null): ${why}`);
    throwsLine(() => base().setArgument([1] as never), TypeError, `setArgument: argument array(1) is not a by-value Datum (number, bigint, boolean or null): ${why}`);
    throwsLine(() => base().setArgument((() => 1) as never), TypeError, `setArgument: argument function (anonymous) is not a by-value Datum (number, bigint, boolean or null): ${why}`);
    throwsLine(() => base().setArgument(Symbol("s") as never), TypeError, `setArgument: argument Symbol(s) is not a by-value Datum (number, bigint, boolean or null): ${why}`);
    throwsLine(() => base().setArgument(Number.POSITIVE_INFINITY), RangeError, "setArgument: argument Infinity must be a finite number", OUT_OF_RANGE);
    throwsLine(() => base().setArgument(Number.NaN), RangeError, "setArgument: argument NaN must be a finite number", OUT_OF_RANGE);
    throwsLine(() => base().setArgument(2n ** 64n), RangeError, "setArgument: argument 18446744073709551616n does not fit in a 64-bit Datum", OUT_OF_RANGE);
    throwsLine(() => base().setArgument("x" as never), TypeError, `setArgument: argument "x" is not a by-value Datum (number, bigint, boolean or null): ${why}`, WRONG_KIND);
  });

  it("start time: one of BgWorkerStartTime", () => {
    throwsLine(
      () => base().setStartTime(7 as BgWorkerStartTime),
      TypeError,
      "setStartTime: start time 7 must be BgWorkerStartTime.PostmasterStart, ConsistentState or RecoveryFinished",
      WRONG_KIND,
    );
  });

  it("SPI access with PostmasterStart is refused at load", async () => {
    const message =
      'load: background worker "w" cannot request database access with start time PostmasterStart: the database may not be consistent yet; use ConsistentState or RecoveryFinished';
    await assert.rejects(
      registered(() => base().enableSpiAccess().setStartTime(BgWorkerStartTime.PostmasterStart).load()),
      { name: "TypeError", message, code: WRONG_KIND },
    );
  });

  it("notify pid: a process id; refused on a static worker", async () => {
    const rule = "must be a process id (an integer from 0 to 2147483647)";
    throwsLine(() => base().setNotifyPid(-3), RangeError, `setNotifyPid: notify pid -3 ${rule}`, OUT_OF_RANGE);
    throwsLine(() => base().setNotifyPid(2 ** 31), RangeError, `setNotifyPid: notify pid 2147483648 ${rule}`, OUT_OF_RANGE);
    throwsLine(() => base().setNotifyPid(1.5), RangeError, `setNotifyPid: notify pid 1.5 ${rule}`, OUT_OF_RANGE);
    throwsLine(() => base().setNotifyPid(Number.NaN), RangeError, `setNotifyPid: notify pid NaN ${rule}`, OUT_OF_RANGE);
    throwsLine(() => base().setNotifyPid("12" as unknown as number), TypeError, `setNotifyPid: notify pid "12" ${rule}`, WRONG_KIND);
    assert.equal(definitionOf(base().setNotifyPid(0)).notifyPid, 0);
    await assert.rejects(registered(() => base().setNotifyPid(1234).load()), {
      name: "TypeError",
      message: 'load: notify pid 1234 of background worker "w" is refused: only dynamic background workers can request notification',
      code: "ERR_BGWORKER_NOTIFY_PID",
    });
  });

  it("shared memory startup: a function", () => {
    throwsLine(() => base().enableShmemAccess(5 as never), TypeError, "enableShmemAccess: startup 5 must be a function or undefined", WRONG_KIND);
  });

  it("load() outside _PG_init names loadDynamic()", () => {
    throwsLine(
      () => base().load(),
      Error,
      'load: static background worker "w" can only be registered inside an extension\'s _PG_init(); use loadDynamic() to start a worker at run time',
      "ERR_BGWORKER_NOT_IN_PG_INIT",
    );
  });

  it("errors point at the caller's line, not at validation internals", () => {
    try {
      base().setRestartTime(-5);
      assert.fail("expected a throw");
    } catch (error) {
      const frames = (error as Error).stack?.split("\n").slice(1) ?? [];
      assert.match(frames[0] ?? "", /builder\.test\.ts/);
    }
  });
});
