/**
 * Real processes contending on real shared memory: exact totals of atomics and of a counter under an
 * exclusive lock, no torn reads under share, and a waiter that sleeps while the lock is held.
 */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { ShmemHost, type ShmemAttachment } from "../../src/shmem/index.js";
import { killAll, leftovers, requestsOf, startChild } from "../fixtures/shmem/children.js";
import { ALL, COUNTER, DONE, GATE, HITS, READY, SMALL, TORN } from "../fixtures/shmem/structures.js";

const PREFIX = "bgwtest-contention";
const TOTAL = 1_000_000;

describe("shared memory across processes", async () => {
  const host = new ShmemHost(await requestsOf(...ALL), { prefix: PREFIX });
  let attachment: ShmemAttachment = host.create();

  after(async () => {
    await killAll();
    host.destroy();
    assert.deepEqual(leftovers(PREFIX), []);
  });

  /** Opens the gate once `n` children are attached and waiting at it, so that they really run together. */
  async function openGate(n: number): Promise<void> {
    const deadline = Date.now() + 60_000;
    while (READY.get() < n) {
      assert.ok(Date.now() < deadline, `only ${READY.get()} of ${n} children became ready`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    GATE.set(1);
  }

  /** A fresh zeroed segment for each test, as a crash-restart makes (children attach to the new one). */
  function fresh(): void {
    attachment = host.create();
  }

  for (const n of [2, 4]) {
    test(`${n} processes add ${TOTAL} in total to a PgAtomic and to a counter under exclusive()`, async () => {
      fresh();
      const children = Array.from({ length: n }, () => startChild("count", TOTAL / n, attachment));
      await openGate(n);
      const started = process.hrtime.bigint();
      const reports = await Promise.all(children.map((child) => child.result));
      const ms = Number(process.hrtime.bigint() - started) / 1e6; // from the gate: the children are already up
      assert.equal(HITS.get(), BigInt(TOTAL));
      assert.equal(SMALL.get(), TOTAL);
      assert.equal(COUNTER.share((s) => s.count), BigInt(TOTAL));
      const loops = reports.map((r) => Math.round(r.ms as number)).join(", ");
      console.log(`${n} processes: totals ${HITS.get()}/${SMALL.get()}/${COUNTER.share((s) => s.count)}; loops ${loops} ms; wall ${Math.round(ms)} ms`);
    });
  }

  test("readers under share() never see a torn struct while a writer rewrites it", async () => {
    fresh();
    const writer = startChild("torn-writer", 20_000, attachment);
    const readers = [startChild("torn-reader", 0, attachment), startChild("torn-reader", 0, attachment)];
    await openGate(3);
    const [written, ...read] = await Promise.all([writer.result, ...readers.map((r) => r.result)]);
    assert.equal(written!.writes, 20_000);
    assert.equal(DONE.get(), 1);
    for (const r of read) {
      assert.equal(r.torn, 0, `torn reads: ${JSON.stringify(r)}`);
      assert.ok((r.reads as number) > 1, `reads: ${JSON.stringify(r)}`);
    }
    assert.deepEqual(
      TORN.share((s) => [s.a, s.b, s.c, s.label, [...s.ring]]),
      [20_000n, 20_000, 20_000, "20000", [20_000n, 20_000n, 20_000n, 20_000n]],
    );
    console.log(`torn-read: ${read.map((r) => `${r.reads} reads, ${r.distinct} distinct values, ${r.torn} torn`).join("; ")}`);
  });

  test("a process waiting for a lock held 200 ms sleeps instead of spinning", async () => {
    fresh();
    const waiter = startChild("wait", 0, attachment);
    // The holder opens the gate from inside its section, so the waiter starts waiting while it is held.
    const holder = startChild("hold", 200, attachment);
    const [waited] = await Promise.all([waiter.result, holder.result]);
    const { wallMs, cpuMs } = waited as { wallMs: number; cpuMs: number };
    console.log(`sleeping waiter: waited ${wallMs.toFixed(1)} ms wall, ${cpuMs.toFixed(2)} ms CPU`);
    // The holder kept the lock 200 ms after the waiter was asleep on it.
    assert.ok(wallMs >= 190, `the waiter should have waited for the holder, waited ${wallMs} ms`);
    assert.ok(cpuMs < wallMs / 5, `CPU ${cpuMs} ms while waiting ${wallMs} ms`);
    assert.equal(COUNTER.share((s) => s.count), 1n);
  });
});
