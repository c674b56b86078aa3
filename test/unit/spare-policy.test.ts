import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SparePolicy, SPARE_CEILING, SPARE_DECAY_MS } from "../../src/postmaster/spare-policy.js";

describe("SparePolicy", () => {
  it("keeps the floor while launches find warm spares", () => {
    const policy = new SparePolicy(2, SPARE_CEILING);
    assert.equal(policy.target, 2);
    assert.equal(policy.tick(1_000_000), false);
    assert.equal(policy.target, 2);
  });

  it("grows by one per launch that found no warm spare, up to the ceiling (maxSpareRunners)", () => {
    const policy = new SparePolicy(1, SPARE_CEILING);
    for (let i = 0; i < 50; i++) policy.missed(1000 + i);
    assert.equal(policy.target, SPARE_CEILING);
    const bounded = new SparePolicy(1, 3);
    for (let i = 0; i < 50; i++) bounded.missed(1000 + i);
    assert.equal(bounded.target, 3);
    const fixed = new SparePolicy(2, 2);
    fixed.missed(0);
    assert.equal(fixed.target, 2, "a ceiling equal to the floor keeps the pool fixed");
  });

  it("shrinks by one per quiet period, back to the floor", () => {
    const policy = new SparePolicy(1, 4, 1000);
    for (let i = 0; i < 3; i++) policy.missed(0);
    assert.equal(policy.target, 4);
    assert.equal(policy.tick(999), false);
    assert.equal(policy.tick(1000), true);
    assert.equal(policy.target, 3);
    assert.equal(policy.tick(1500), false, "one step per quiet period");
    policy.missed(1600);
    assert.equal(policy.target, 4, "a miss resets the quiet period and grows again");
    let now = 1600;
    while (policy.target > 1) {
      now += 1000;
      policy.tick(now);
    }
    assert.equal(policy.target, 1);
    assert.equal(policy.tick(now + 10 * SPARE_DECAY_MS), false);
  });

  it("never grows a pool configured with no spares, and honours a floor above the default ceiling", () => {
    const none = new SparePolicy(0, SPARE_CEILING);
    none.missed(0);
    assert.equal(none.target, 0);
    const many = new SparePolicy(12, 12);
    many.missed(0);
    assert.equal(many.target, 12);
  });
});
