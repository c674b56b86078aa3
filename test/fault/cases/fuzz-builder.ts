/**
 * Fuzzing BackgroundWorkerBuilder with a fixed seed: every setter with values of every JavaScript type,
 * then random sequences of setters ending in toDefinition(), load() and loadDynamic(). Each call either
 * succeeds or throws a TypeError/RangeError whose `code` is ERR_BGWORKER_* and whose message is one line;
 * a refused call leaves the builder as it was.
 */
import { definitionOf } from "../../../src/builder.js";
import { BackgroundWorkerBuilder } from "../../../src/index.js";
import { Expectations, Rng, type FaultCase, type FaultScale, type Outcome } from "../harness.js";

class Plain {
  readonly x = 1;
}

/** Values of every JavaScript type, and the awkward members of each. */
export function valuesOfEveryType(): unknown[] {
  return [
    undefined, null, true, false,
    0, -0, 1, -1, 1.5, 95, 96, 128, 129, 86_400_000, 86_400_001, 2 ** 31, 2 ** 53, Number.MAX_VALUE, NaN, Infinity, -Infinity,
    0n, 1n, -1n, 2n ** 63n, 2n ** 64n, -(2n ** 63n) - 1n,
    "", " ", "x", "é", "😀", "a".repeat(95), "a".repeat(96), "é".repeat(48), "\u0000", "line\nbreak", "__proto__", "toString",
    Symbol("s"), () => 1, async () => 1, function named() {},
    {}, [], [1], { valueOf: () => 1 }, { toString: () => "x" }, new Plain(), Object.create(null), new Date(0), /re/, new Map(), new Set(),
    new Uint8Array(0), new Uint8Array(128), new Uint8Array(129), new Int8Array(4), new ArrayBuffer(4), Buffer.from("abc"),
    new Proxy({}, {}), Promise.resolve(1), new Error("e"), new WeakMap(), Number(1), new String("x"), new Boolean(false),
  ];
}

const SETTERS = [
  "setType", "enableShmemAccess", "enableSpiAccess", "setStartTime", "setRestartTime", "setLibrary", "setFunction",
  "setArgument", "setExtra", "setNotifyPid",
] as const;

function describe(value: unknown): string {
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "symbol" || typeof value === "function") return typeof value;
  try {
    return JSON.stringify(value)?.slice(0, 40) ?? String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/** What the builder would produce now, or the error it gives: equal before and after a refused call. */
function snapshot(builder: BackgroundWorkerBuilder): string {
  try {
    const definition = definitionOf(builder);
    return JSON.stringify(definition);
  } catch (error) {
    return `error: ${(error as Error).message}`;
  }
}

/** A problem with `error`, or undefined when it is a clear, coded error. */
function unclear(error: unknown): string | undefined {
  if (!(error instanceof TypeError || error instanceof RangeError || error instanceof Error)) return `threw a non-Error ${describe(error)}`;
  const code = (error as { code?: unknown }).code;
  if (typeof code !== "string" || !code.startsWith("ERR_BGWORKER_")) return `${error.name} without an ERR_BGWORKER_ code: ${error.message}`;
  if (error.message.length === 0 || error.message.includes("\n")) return `message not one line: ${JSON.stringify(error.message)}`;
  return undefined;
}

function call(builder: BackgroundWorkerBuilder, setter: (typeof SETTERS)[number], value: unknown): unknown {
  const method = builder[setter] as (this: BackgroundWorkerBuilder, arg?: unknown) => unknown;
  return method.call(builder, value);
}

async function run(scale: FaultScale, log: (line: string) => void): Promise<Outcome> {
  const e = new Expectations();
  const rng = new Rng(scale.seed ^ 0xb111d);
  const values = valuesOfEveryType();
  const problems: string[] = [];
  let accepted = 0;
  let refused = 0;

  // Every setter (and the constructors) with every value.
  for (const value of values) {
    for (const make of [(v: unknown) => new BackgroundWorkerBuilder(v as string), (v: unknown) => BackgroundWorkerBuilder.new(v as string)]) {
      try {
        make(value);
        accepted += 1;
      } catch (error) {
        refused += 1;
        const problem = unclear(error);
        if (problem !== undefined) problems.push(`constructor(${describe(value)}): ${problem}`);
      }
    }
    for (const setter of SETTERS) {
      const builder = new BackgroundWorkerBuilder("fuzz").setLibrary("/nonexistent/fuzz.ts").setFunction("main");
      const before = snapshot(builder);
      try {
        const returned = call(builder, setter, value);
        accepted += 1;
        if (returned !== builder) problems.push(`${setter}(${describe(value)}) returned something other than the builder`);
      } catch (error) {
        refused += 1;
        const problem = unclear(error);
        if (problem !== undefined) problems.push(`${setter}(${describe(value)}): ${problem}`);
        if (snapshot(builder) !== before) problems.push(`${setter}(${describe(value)}) was refused but changed the builder`);
      }
    }
  }

  // Random sequences, ending in the cross-field checks of toDefinition(), load() and loadDynamic().
  for (let i = 0; i < scale.fuzzCases; i++) {
    let builder: BackgroundWorkerBuilder;
    try {
      builder = new BackgroundWorkerBuilder(rng.next() < 0.8 ? `w${i}` : (rng.pick(values) as string));
    } catch {
      continue;
    }
    for (let steps = rng.int(1, 6); steps > 0; steps--) {
      const setter = rng.pick(SETTERS);
      try {
        call(builder, setter, rng.next() < 0.3 ? undefined : rng.pick(values));
      } catch (error) {
        const problem = unclear(error);
        if (problem !== undefined) problems.push(`sequence ${i} ${setter}: ${problem}`);
      }
    }
    for (const [what, end] of [
      ["definition", () => definitionOf(builder)],
      ["load", () => builder.load()],
    ] as const) {
      try {
        end();
      } catch (error) {
        const problem = unclear(error);
        if (problem !== undefined) problems.push(`sequence ${i} ${what}: ${problem}`);
      }
    }
    try {
      await builder.loadDynamic();
      problems.push(`sequence ${i}: loadDynamic succeeded outside any postmaster or connection`);
    } catch (error) {
      const problem = unclear(error);
      if (problem !== undefined) problems.push(`sequence ${i} loadDynamic: ${problem}`);
    }
  }
  for (const problem of problems.slice(0, 8)) e.expect(false, problem);
  e.expect(problems.length === 0, `${problems.length} calls without a clear outcome`);
  e.figure("calls", `${values.length} values x ${SETTERS.length + 2} entry points (${accepted} accepted, ${refused} refused) + ${scale.fuzzCases} random sequences`);
  log(`fuzz-builder: ${problems.length} problems`);
  return e.outcome();
}

export const fuzzBuilder: FaultCase = {
  id: "fuzz-builder",
  group: "fuzz",
  title: "BackgroundWorkerBuilder: every setter with values of every JS type, random sequences, load and loadDynamic",
  bounded: true,
  run,
};
