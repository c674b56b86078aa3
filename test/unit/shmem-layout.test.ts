/** Struct layouts and the checks on values: sizes, alignment, utf8 bounds, exact error messages, types. */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { PgAtomic, PgLwLock, ShmemHost, type ReadonlyStructValue, type StructValue } from "../../src/shmem/index.js";
import { leftovers, requestsOf } from "../fixtures/shmem/children.js";

const PREFIX = "bgwtest-layout";

const STATE = new PgLwLock("layout_state", {
  count: "u64",
  last: "f64",
  ok: "bool",
  small: "i32",
  label: { utf8: 32 },
  ring: { array: "i32", length: 8 },
});
const EVERY = new PgLwLock("layout_every", {
  b: "bool", u8: "u8", i8: "i8", u16: "u16", i16: "i16", u32: "u32", i32: "i32", f32: "f32", f64: "f64", u64: "u64", i64: "i64",
});
const U32 = new PgAtomic("layout_u32", "u32");
const U64 = new PgAtomic("layout_u64", "u64");

describe("layouts", async () => {
  const requests = await requestsOf(STATE, EVERY, U32, U64);
  const host = new ShmemHost(requests, { prefix: PREFIX });
  host.create();
  after(() => {
    host.destroy();
    assert.deepEqual(leftovers(PREFIX), []);
  });

  test("fields are placed in order at their natural alignment, after an 8-byte lock word", () => {
    assert.deepEqual(requests[0], {
      name: "layout_state",
      kind: "PgLwLock",
      // count 0-8, last 8-16, ok 16, small 20-24, label 24-56, ring 56-88: 88 data bytes + 8 for the lock.
      size: 96,
      align: 64,
      signature: "PgLwLock{count:u64,last:f64,ok:bool,small:i32,label:utf8[32],ring:i32[8]}",
    });
    // b 0, u8 1, i8 2, u16 4, i16 6, u32 8, i32 12, f32 16, f64 24, u64 32, i64 40 -> 48 + 8.
    assert.equal(requests[1]!.size, 56);
    assert.deepEqual(requests.slice(2).map((r) => [r.size, r.signature]), [[4, "PgAtomic(u32)"], [8, "PgAtomic(u64)"]]);
    assert.deepEqual(host.attachment!.layout.map((e) => e.offset), [64, 192, 256, 320]);
    assert.equal(host.size, 384);
  });

  test("every scalar type round-trips at its limits", () => {
    const max = { b: true, u8: 255, i8: -128, u16: 65535, i16: -32768, u32: 4294967295, i32: -2147483648, f32: 0.5, f64: -1e300, u64: 2n ** 64n - 1n, i64: -(2n ** 63n) };
    EVERY.exclusive((s) => Object.assign(s, max));
    assert.deepEqual(EVERY.share((s) => ({ ...s })), max);
  });

  test("utf8 holds exactly its byte size, counted in UTF-8 bytes; shorter strings read back whole", () => {
    STATE.exclusive((s) => (s.label = "é".repeat(16)));
    assert.equal(STATE.share((s) => s.label), "é".repeat(16));
    STATE.exclusive((s) => (s.label = "short"));
    assert.equal(STATE.share((s) => s.label), "short");
    assert.throws(() => STATE.exclusive((s) => (s.label = "é".repeat(16) + "x")), {
      name: "RangeError",
      message: 'PgLwLock "layout_state": field label of 33 UTF-8 bytes must be at most 32 bytes',
    });
    assert.equal(STATE.share((s) => s.label), "short", "a refused write changes nothing");
    assert.throws(() => STATE.exclusive((s) => (s.label = "a\0b")), { message: 'PgLwLock "layout_state": field label "a\\u0000b" must not contain a NUL character' });
    assert.throws(() => STATE.exclusive((s) => (s.label = "\uD800")), { message: /must be well-formed Unicode/ });
  });

  test("wrong types and out-of-range values are refused with one line naming field, value and rule", () => {
    const cases: [(s: StructValue<typeof STATE.layout>) => void, string, string][] = [
      [(s) => ((s as { count: unknown }).count = 1), "TypeError", 'PgLwLock "layout_state": field count 1 must be a bigint (u64)'],
      [(s) => (s.count = -1n), "RangeError", 'PgLwLock "layout_state": field count -1n must be from 0 to 18446744073709551615 (u64)'],
      [(s) => (s.small = 1.5), "RangeError", 'PgLwLock "layout_state": field small 1.5 must be an integer (i32)'],
      [(s) => (s.small = 2 ** 31), "RangeError", 'PgLwLock "layout_state": field small 2147483648 must be from -2147483648 to 2147483647 (i32)'],
      [(s) => ((s as { ok: unknown }).ok = 1), "TypeError", 'PgLwLock "layout_state": field ok 1 must be a boolean (bool)'],
      [(s) => ((s as { label: unknown }).label = 5), "TypeError", 'PgLwLock "layout_state": field label 5 must be a string (utf8)'],
      [(s) => (s.ring[8] = 1), "RangeError", 'PgLwLock "layout_state": field ring index 8 must be an integer from 0 to 7'],
      [(s) => (s.ring[0] = 0.5), "RangeError", 'PgLwLock "layout_state": field ring[0] 0.5 must be an integer (i32)'],
      [(s) => ((s as { ring: unknown }).ring = [1]), "TypeError", 'PgLwLock "layout_state": field ring is an array: write its elements (ring[i] = value), not array(1)'],
    ];
    for (const [write, name, message] of cases) assert.throws(() => STATE.exclusive(write), { name, message });
    assert.throws(() => STATE.share((s) => ((s as { small: number }).small = 1)), {
      name: "TypeError",
      message: 'PgLwLock "layout_state": field small is read-only in share(): write it inside exclusive()',
    });
    assert.throws(() => STATE.share((s) => ((s.ring as number[])[0] = 1)), { message: 'PgLwLock "layout_state": field ring[0] is read-only in share(): write it inside exclusive()' });
  });

  test("arrays index, iterate and spread inside the section", () => {
    STATE.exclusive((s) => {
      for (let i = 0; i < s.ring.length; i++) s.ring[i] = i * 10;
    });
    assert.deepEqual(STATE.share((s) => [...s.ring]), [0, 10, 20, 30, 40, 50, 60, 70]);
    assert.equal(STATE.share((s) => s.ring[7]), 70);
  });

  test("a view used after its section, a nested section and an async section are refused", async () => {
    const escaped = STATE.share((s) => s);
    assert.throws(() => escaped.count, {
      message: 'PgLwLock "layout_state": the struct was used outside its share()/exclusive() section: read and write it only inside the section',
    });
    assert.throws(() => STATE.exclusive(() => STATE.share((s) => s.count)), {
      message: 'PgLwLock "layout_state": share() inside a section of the same lock would deadlock: sections on one lock must not nest',
    });
    const asyncSection = (async () => undefined) as unknown as () => void;
    assert.throws(() => STATE.exclusive(asyncSection), {
      name: "TypeError",
      message:
        'PgLwLock "layout_state": the exclusive() section returned a promise, but sections must be synchronous: ' +
        "the lock was released when the function returned; do the async work before or after the section",
    });
    // The lock was released: a new exclusive section gets it at once.
    assert.equal(STATE.exclusive(() => 1), 1);
    assert.throws(() => STATE.exclusive(() => { throw new Error("boom"); }), { message: "boom" });
    assert.equal(STATE.exclusive(() => 2), 2, "a throwing section releases the lock");
  });

  test("PgAtomic: u32 wraps like pg_atomic_fetch_add_u32, u64 too; returns old values", () => {
    U32.set(4294967295);
    assert.equal(U32.add(1), 4294967295);
    assert.equal(U32.get(), 0);
    assert.equal(U32.add(-1), 0);
    assert.equal(U32.get(), 4294967295);
    assert.equal(U32.compareExchange(1, 2), 4294967295, "a failed exchange returns the value found");
    assert.equal(U32.compareExchange(4294967295, 2), 4294967295);
    assert.equal(U32.get(), 2);
    U64.set(0n);
    assert.equal(U64.add(-1n), 0n);
    assert.equal(U64.get(), 2n ** 64n - 1n);
    assert.throws(() => U32.set(-1), { name: "RangeError", message: 'PgAtomic "layout_u32": set value -1 must be from 0 to 4294967295 (u32)' });
    assert.throws(() => U32.add(0.5), { name: "RangeError", message: 'PgAtomic "layout_u32": add delta 0.5 must be an integer (u32)' });
    assert.throws(() => U64.add(1 as unknown as bigint), { name: "TypeError", message: 'PgAtomic "layout_u64": add delta 1 must be a bigint (u64)' });
    assert.throws(() => U64.compareExchange(0n, 2n ** 64n), { name: "RangeError", message: 'PgAtomic "layout_u64": compareExchange next 18446744073709551616n must be from 0 to 18446744073709551615 (u64)' });
  });

  test("declarations are checked when made", () => {
    assert.throws(() => new PgAtomic("", "u64"), { name: "TypeError", message: 'PgAtomic: name "" must not be empty' });
    assert.throws(() => new PgAtomic("x".repeat(48), "u64"), { message: /PgAtomic: name "x+"… \(48 bytes\) must be at most 47 UTF-8 bytes|PgAtomic: name "x{48}" must be at most 47 UTF-8 bytes/ });
    assert.throws(() => new PgAtomic("a", "u16" as "u32"), { name: "TypeError", message: 'PgAtomic "a": type "u16" must be "u32" (number) or "u64" (bigint)' });
    assert.throws(() => new PgLwLock("a", {}), { message: 'PgLwLock "a": layout must have at least one field' });
    assert.throws(() => new PgLwLock("a", { x: "u128" as "u64" }), {
      message: 'PgLwLock "a": field x type "u128" must be one of bool, u8, i8, u16, i16, u32, i32, f32, f64, u64, i64, { utf8: bytes } or { array: type, length: n }',
    });
    assert.throws(() => new PgLwLock("a", { s: { utf8: 0 } }), { name: "RangeError", message: 'PgLwLock "a": field s utf8 size 0 must be from 1 to 65536 (bytes)' });
    assert.throws(() => new PgLwLock("a", { r: { array: "i32", length: 2.5 } }), { name: "RangeError", message: 'PgLwLock "a": field r array length 2.5 must be an integer' });
    assert.throws(() => new PgLwLock("a", { r: { array: "utf8" as "i32", length: 2 } }), { message: /field r array element type "utf8" must be one of bool/ });
    assert.throws(() => new PgLwLock("a", { "1x": "u8" }), { message: /field name "1x" must be an identifier/ });
  });

  test("types: the struct's JavaScript types follow the layout", () => {
    type S = StructValue<typeof STATE.layout>;
    type R = ReadonlyStructValue<typeof STATE.layout>;
    const check = (s: S, r: R): void => {
      const count: bigint = s.count;
      const last: number = s.last;
      const ok: boolean = s.ok;
      const label: string = s.label;
      const element: number = s.ring[0]!;
      // @ts-expect-error -- a u64 is a bigint
      s.count = 1;
      // @ts-expect-error -- share() is read-only
      r.small = 1;
      // @ts-expect-error -- array elements are read-only in share()
      r.ring[0] = 1;
      void [count, last, ok, label, element];
    };
    void check;
    const bigint: bigint = U64.get();
    const number: number = U32.get();
    // @ts-expect-error -- an async section is refused by type too
    const refused = (): void => void STATE.exclusive(async () => 1);
    void [bigint, number, refused];
  });
});
