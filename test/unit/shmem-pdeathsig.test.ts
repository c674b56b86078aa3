/**
 * parentDeathSignal (src/shmem/pdeathsig.ts): the addon's prctl(PR_SET_PDEATHSIG) for workers. A process
 * that asked for SIGTERM gets it the moment its parent is killed.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import { join } from "node:path";
import { test } from "node:test";
import { shmAddon } from "../../src/shmem/native.js";
import { parentDeathSignal } from "../../src/shmem/pdeathsig.js";
import { ROOT, waitGone } from "../helpers/postmaster.js";

test("parentDeathSignal takes a signal name or a number from 0 to 64, and says true once it is set", () => {
  assert.equal(parentDeathSignal(0), true);
  assert.equal(parentDeathSignal("SIGTERM"), true);
  assert.equal(parentDeathSignal(0), true); // cleared again: this test runner's own parent stays as it is
  for (const bad of [-1, 65, 1.5, Number.NaN, "SIGNOPE"]) {
    assert.throws(() => parentDeathSignal(bad as NodeJS.Signals), (error: unknown) => error instanceof RangeError && /parentDeathSignal: .* is not a signal name or a number from 0 to 64/.test(error.message));
  }
  assert.throws(() => shmAddon().setParentDeathSignal(99), { name: "RangeError", message: "setParentDeathSignal: signal 99 must be an integer from 0 to 64" });
  assert.throws(() => shmAddon().setParentDeathSignal("15" as unknown as number), { name: "TypeError", message: "setParentDeathSignal: signal must be a number" });
});

test("a process that asked for SIGTERM on its parent's death gets it when its parent is SIGKILLed", async () => {
  const module = pathToFileURL(join(ROOT, "src", "shmem", "pdeathsig.ts")).href;
  const grandchild = `import { parentDeathSignal } from ${JSON.stringify(module)};
    process.on("SIGTERM", () => { console.log("SIGTERM"); process.exit(0); });
    console.log(parentDeathSignal("SIGTERM") ? "set" : "absent");
    setInterval(() => {}, 1000);`;
  const parent = `const { spawn } = require("node:child_process");
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", ${JSON.stringify(grandchild)}], { stdio: ["ignore", "inherit", "inherit"] });
    console.log("pid " + child.pid);
    setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ["-e", parent], { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
  const lines: string[] = [];
  let seen: () => void = () => {};
  createInterface({ input: child.stdout }).on("line", (line) => {
    lines.push(line);
    seen();
  });
  const until = (what: string) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "${what}" line in 20 s: ${JSON.stringify(lines)}`)), 20_000);
      seen = () => {
        if (lines.includes(what)) {
          clearTimeout(timer);
          resolve();
        }
      };
      seen();
    });
  try {
    await until("set");
    const pid = Number(lines.find((line) => line.startsWith("pid "))?.slice(4));
    assert.ok(pid > 0, JSON.stringify(lines));
    child.kill("SIGKILL");
    await until("SIGTERM");
    assert.deepEqual(await waitGone([pid]), [], "the orphan exited on its SIGTERM");
  } finally {
    child.kill("SIGKILL");
  }
});
