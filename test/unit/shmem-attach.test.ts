/**
 * Attachment: pgShmemInit's rules, the host's segment life (fresh segment per create, re-attachment by
 * generation), workers with and without access, layout mismatches, and stale segment cleanup.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { after, describe, test } from "node:test";
import { withInit } from "../../src/context.js";
import {
  attachShmem,
  cleanupStaleSegments,
  denyShmem,
  detachShmem,
  pgShmemInit,
  PgAtomic,
  ShmemHost,
  validateRequests,
  type ShmemRequest,
} from "../../src/shmem/index.js";
import { writeHeader } from "../../src/shmem/header.js";
import { shmAddon } from "../../src/shmem/native.js";
import { killAll, leftovers, requestsOf, startChild } from "../fixtures/shmem/children.js";
import { ALL, HITS } from "../fixtures/shmem/structures.js";

const PREFIX = "bgwtest-attach";

describe("attaching to shared memory", async () => {
  const requests = await requestsOf(...ALL);
  const hosts: ShmemHost[] = [];
  const host = (list: readonly ShmemRequest[] = requests): ShmemHost => {
    const made = new ShmemHost(list, { prefix: PREFIX });
    hosts.push(made);
    return made;
  };

  after(async () => {
    await killAll();
    for (const made of hosts) made.destroy();
    assert.deepEqual(leftovers(PREFIX), []);
  });

  test("pgShmemInit works only inside _PG_init, and each name once", async () => {
    assert.throws(() => pgShmemInit(HITS), {
      message: "pgShmemInit: shared memory can only be requested inside an extension's _PG_init(): the postmaster creates the segment once, at start",
    });
    const context = { extension: "/x.ts", registerStatic(): void {}, requestShmem(): void {} };
    await withInit(context, () => {
      assert.throws(() => pgShmemInit(HITS, HITS), { message: /shared memory structure "test_hits" is requested twice \(PgAtomic\(u64\) and PgAtomic\(u64\)\)/ });
      assert.throws(() => pgShmemInit({} as PgAtomic), { name: "TypeError", message: "pgShmemInit: argument 1 object must be a PgAtomic or a PgLwLock" });
      pgShmemInit(HITS);
      assert.throws(() => pgShmemInit(new PgAtomic("test_hits", "u32")), {
        message: 'pgShmemInit: shared memory structure "test_hits" is already requested by this _PG_init(): request each name once',
      });
    });
  });

  test("validateRequests and ShmemHost refuse duplicate names across extensions", () => {
    const twice = [...requests, { ...requests[0]!, signature: "PgAtomic(u32)" }];
    assert.throws(() => validateRequests(twice), {
      message: 'shared memory structure "test_hits" is requested twice (PgAtomic(u64) and PgAtomic(u32)): names of shared memory structures must be unique across extensions',
    });
    assert.throws(() => new ShmemHost(twice), /requested twice/);
    assert.throws(() => new ShmemHost(requests, { prefix: "a.b" }), { message: 'ShmemHost: prefix "a.b" must be 1 to 64 letters, digits, "_" or "-"' });
  });

  test("create() makes a fresh zeroed segment each time; structures re-attach by generation", () => {
    const made = host();
    const first = made.create();
    assert.equal(first.generation, 1);
    assert.match(first.path, new RegExp(`^/${PREFIX}\\.${process.pid}\\.\\d+$`));
    HITS.add(5n);
    assert.equal(HITS.get(), 5n);
    const second = made.create();
    assert.equal(second.generation, 2);
    assert.notEqual(second.path, first.path);
    assert.equal(existsSync(`/dev/shm${first.path}`), false, "the previous segment is unlinked");
    assert.equal(HITS.get(), 0n, "the new segment is zeroed and the structure re-attached to it");
    made.destroy();
    made.destroy();
    assert.equal(existsSync(`/dev/shm${second.path}`), false);
    assert.throws(() => HITS.get(), { message: /^PgAtomic "test_hits": shared memory is not attached in this process/ });
  });

  test("a plain process is told that shared memory is not attached", async () => {
    const child = startChild("plain", 0, null);
    assert.match(String((await child.result).error), /^PgAtomic "test_hits": shared memory is not attached in this process/);
  });

  test("a worker declaring another layout for a name is refused", async () => {
    const attachment = host().create();
    const child = startChild("mismatch", 0, attachment);
    assert.equal(
      (await child.result).error,
      'PgAtomic "test_hits": this process declares PgAtomic(u32) but shared memory holds PgAtomic(u64): the extension and the worker must import the same declaration',
    );
  });

  test("attachShmem maps the segment; denyShmem makes later use say why", () => {
    const made = host();
    const attachment = made.create();
    HITS.set(42n);
    attachShmem(attachment); // this process is the host: already attached, nothing to do
    assert.equal(HITS.get(), 42n);
    denyShmem("counter");
    assert.throws(() => HITS.get(), { message: 'background worker "counter" has no shared memory access: register it with enableShmemAccess()' });
    attachShmem(attachment); // this process is not denied any more
    assert.equal(HITS.get(), 42n);
    host().create(); // another postmaster's segment becomes this process's mapping
    assert.equal(HITS.get(), 0n);
    attachShmem(attachment); // maps the first segment again, as a worker does
    assert.equal(HITS.get(), 42n);
    detachShmem();
    assert.throws(() => HITS.get(), /not attached/);
    assert.throws(() => attachShmem({ ...attachment, generation: 7 }), {
      message: `attachShmem: shared memory segment "${attachment.path}" does not match its attachment: it is generation ${attachment.generation}, not 7`,
    });
    made.destroy();
    assert.throws(() => attachShmem(attachment), {
      message: `attachShmem: cannot attach shared memory segment "${attachment.path}": shm_open("${attachment.path}") failed: No such file or directory (ENOENT)`,
    });
  });

  test("cleanupStaleSegments removes segments of dead postmasters and keeps live ones", () => {
    const addon = shmAddon();
    const live = host().create();
    // A pid that was alive a moment ago and is not any more.
    const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"]).stdout.toString();
    const deadName = `/${PREFIX}.${dead}.1`;
    addon.unmap(addon.create(deadName, 64));
    // Our own pid, but created by an earlier process that had it (another start time): stale too.
    const reusedName = `/${PREFIX}.${process.pid}.999999`;
    const reused = addon.create(reusedName, 64);
    writeHeader(reused, { generation: 1, pid: process.pid, startTime: 1n, size: 64 });
    addon.unmap(reused);
    const removed = cleanupStaleSegments(PREFIX).sort();
    assert.deepEqual(removed, [deadName, reusedName].sort());
    assert.ok(existsSync(`/dev/shm${live.path}`), "a live postmaster's segment is kept");
    assert.deepEqual(cleanupStaleSegments(PREFIX), []);
  });
});
