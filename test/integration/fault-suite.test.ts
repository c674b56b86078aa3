/**
 * The bounded form of the fault suite (docs/reliability.md): every case marked bounded, at the size of
 * BOUNDED (a few seconds of chaos, 200 fuzz cases a target, a fixed seed). `npm run fault` runs them all
 * at full size and writes the table.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CASES } from "../fault/cases/index.js";
import { BOUNDED } from "../fault/harness.js";

describe("fault suite (bounded)", () => {
  for (const fault of CASES.filter((c) => c.bounded)) {
    it(`${fault.id}: ${fault.title}`, async (t) => {
      const outcome = await fault.run(BOUNDED, (line) => t.diagnostic(line));
      for (const [name, value] of Object.entries(outcome.figures)) t.diagnostic(`${name}: ${value}`);
      assert.deepEqual(outcome.failures, [], `${fault.id} failed:\n${outcome.failures.join("\n")}`);
    });
  }
});
