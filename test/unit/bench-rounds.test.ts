// The bench's rounds of one measure: the median round is reported whole, with every round's time.
import assert from "node:assert/strict";
import { test } from "node:test";
import { medianRound } from "../../bench/lib/stats.js";

test("one round is returned as it is", () => {
  const only = { allMs: 10, memory: 1 };
  assert.equal(medianRound([only]), only);
});

test("the median round's record comes whole, with every round's time in run order", () => {
  const rounds = [
    { allMs: 4300, memory: 1 },
    { allMs: 4100, memory: 2 },
    { allMs: 4900, memory: 3 },
  ];
  assert.deepEqual(medianRound(rounds), { allMs: 4300, memory: 1, rounds: [4300, 4100, 4900] });
});

test("a round that did not finish counts as the slowest", () => {
  const rounds = [{ allMs: Number.NaN }, { allMs: 5000 }, { allMs: 3000 }];
  assert.equal(medianRound(rounds).allMs, 5000);
  assert.equal(medianRound([{ allMs: Number.NaN }, { allMs: Number.NaN }, { allMs: 3000 }]).allMs, Number.NaN);
});

test("an even number of rounds reports the lower middle one, a round that ran", () => {
  assert.equal(medianRound([{ allMs: 4 }, { allMs: 1 }, { allMs: 3 }, { allMs: 2 }]).allMs, 2);
});

test("no rounds is an error", () => {
  assert.throws(() => medianRound([]), /no rounds/);
});
