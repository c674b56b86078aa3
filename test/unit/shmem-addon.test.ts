/** The native addon on its own: segments, SharedArrayBuffers across processes, futex wait and wake. */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, describe, test } from "node:test";
import { shmAddon } from "../../src/shmem/native.js";
import type { ShmemAttachment } from "../../src/shmem/index.js";
import { killAll, leftovers, startChild } from "../fixtures/shmem/children.js";

const PREFIX = "bgwtest-addon";
let counter = 0;
const fresh = (): string => `/${PREFIX}.${process.pid}.${++counter}`;

describe("bgworker_shm addon", () => {
  const addon = shmAddon();
  const made: string[] = [];
  const create = (size: number): { name: string; buffer: SharedArrayBuffer } => {
    const name = fresh();
    made.push(name);
    return { name, buffer: addon.create(name, size) };
  };

  after(async () => {
    await killAll();
    for (const name of made) addon.unlink(name);
    assert.deepEqual(leftovers(PREFIX), []);
  });

  test("create makes a zeroed 0600 segment in /dev/shm and maps it as a SharedArrayBuffer", () => {
    const { name, buffer } = create(4096);
    assert.ok(buffer instanceof SharedArrayBuffer);
    assert.equal(buffer.byteLength, 4096);
    assert.ok(new Uint8Array(buffer).every((byte) => byte === 0));
    assert.ok(existsSync(`/dev/shm${name}`));
    assert.equal(addon.unmap(buffer), true);
    assert.equal(addon.unmap(buffer), false, "a second unmap reports that it was already unmapped");
    assert.equal(new Uint8Array(buffer)[0], 0, "an unmapped buffer reads private zeros instead of crashing");
  });

  test("create refuses an existing name (O_EXCL), with the errno in the message and in code", () => {
    const { name } = create(64);
    assert.throws(() => addon.create(name, 64), (error: NodeJS.ErrnoException) => {
      assert.equal(error.message, `shm_open("${name}") failed: File exists (EEXIST)`);
      assert.equal(error.code, "EEXIST");
      assert.equal(error.syscall, "shm_open");
      return true;
    });
  });

  test("open maps the same memory: Atomics through one mapping are seen through the other", () => {
    const { name, buffer } = create(128);
    const other = addon.open(name);
    assert.equal(other.byteLength, 128);
    Atomics.add(new Int32Array(buffer), 3, 41);
    Atomics.add(new BigInt64Array(other), 5, 2n);
    assert.equal(Atomics.load(new Int32Array(other), 3), 41);
    assert.equal(Atomics.load(new BigInt64Array(buffer), 5), 2n);
    addon.unmap(other);
    addon.unmap(buffer);
  });

  test("unlink removes the name; mappings stay valid; open and unlink of a missing segment", () => {
    const { name, buffer } = create(64);
    assert.equal(addon.unlink(name), true);
    assert.equal(addon.unlink(name), false);
    assert.equal(existsSync(`/dev/shm${name}`), false);
    new Int32Array(buffer)[0] = 7;
    assert.equal(new Int32Array(buffer)[0], 7);
    assert.throws(() => addon.open(name), { code: "ENOENT", message: `shm_open("${name}") failed: No such file or directory (ENOENT)` });
    addon.unmap(buffer);
  });

  test("arguments are checked", () => {
    assert.throws(() => addon.create("no-slash", 64), { name: "TypeError", message: /create: name "no-slash" must be "\/" followed by/ });
    assert.throws(() => addon.create(fresh(), 0), { name: "RangeError", message: "create: size 0 must be at least 1 byte" });
    assert.throws(() => addon.unmap(new SharedArrayBuffer(8)), { name: "TypeError", message: "unmap: buffer is not a segment mapped by create() or open()" });
    const buffer = new SharedArrayBuffer(16);
    assert.throws(() => addon.wait(buffer, 2, 0, 0), { name: "RangeError", message: /byteIndex 2 must be a multiple of 4/ });
    assert.throws(() => addon.wait(buffer, 16, 0, 0), { name: "RangeError", message: /byteIndex 16 must be a multiple of 4 with 4 bytes inside the buffer of 16 bytes/ });
    assert.throws(() => addon.wake(buffer, 0, -1), { name: "RangeError" });
  });

  test("wait: not-equal at once, timed-out after the timeout", () => {
    const { buffer } = create(64);
    new Int32Array(buffer)[0] = 5;
    assert.equal(addon.wait(buffer, 0, 4, 10_000), "not-equal");
    const started = process.hrtime.bigint();
    assert.equal(addon.wait(buffer, 0, 5, 30), "timed-out");
    assert.ok(Number(process.hrtime.bigint() - started) / 1e6 >= 25);
    assert.equal(addon.wake(buffer, 0, Infinity), 0);
    addon.unmap(buffer);
  });

  test("another process sees our writes, and wake() reaches it sleeping in wait()", async () => {
    const { name, buffer } = create(64);
    const words = new Int32Array(buffer);
    const attachment: ShmemAttachment = { path: name, size: 64, generation: 1, layout: [] };
    const child = startChild("addon", 0, attachment);
    // Word 2 turns 1 just before the child sleeps on word 1; wake until the kernel reports it woke one.
    const deadline = Date.now() + 30_000;
    let woken = 0;
    while (woken === 0) {
      assert.ok(Date.now() < deadline, "the child never slept on the word");
      if (Atomics.load(words, 2) === 1) woken = addon.wake(buffer, 4, 1);
      if (woken === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    }
    assert.equal(woken, 1);
    assert.deepEqual(await child.result, { result: "ok" });
    assert.equal(Atomics.load(words, 0), 1, "the child's Atomics.add is in our mapping");
    addon.unmap(buffer);
  });
});
