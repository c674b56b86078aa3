// The bench's rounds of one measure: the median round is reported whole, with every round's time, and
// rounds that alternate with a peer are judged by the median of their own ratios.
import assert from "node:assert/strict";
import { test } from "node:test";
import { medianRound, pairedRatio } from "../../bench/lib/stats.js";

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

test("rounds that alternate are judged pair by pair: the median of the rounds' own ratios", () => {
  // Each side's median (4407 against 2974) would say 1.48; two rounds of three are above 1.6.
  assert.equal(pairedRatio([4407, 5269, 4040], [2733, 3060, 2974]).toFixed(2), "1.61");
  assert.equal(pairedRatio([10, 20, 40], [10, 10, 10]), 2);
});

test("a round either side did not finish is left out of the pairs; none left is NaN", () => {
  assert.equal(pairedRatio([Number.NaN, 30, 20, 50], [10, 10, 10, Number.NaN]), 2);
  assert.ok(Number.isNaN(pairedRatio([Number.NaN], [10])));
  assert.throws(() => pairedRatio([1, 2], [1]), /2 rounds against 1/);
});
