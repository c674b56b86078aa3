/** V8's compile cache for runners: the postmaster's environment for them, and the runner's clean-up of it. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { forgetRunnerCompileCache, runnerEnvironment } from "../../src/runtime/compile-cache.js";

describe("runners' compile cache", () => {
  it("names a directory inside the owner-only cache, marked as the postmaster's", () => {
    const env = runnerEnvironment({ PATH: "/bin" }, "/tmp/bgworker-0/typescript");
    assert.equal(env["NODE_COMPILE_CACHE"], join("/tmp/bgworker-0/typescript", "v8"));
    assert.equal(env["BGWORKER_COMPILE_CACHE"], env["NODE_COMPILE_CACHE"]);
    assert.equal(env["PATH"], "/bin");
  });

  it("leaves the environment alone without a cache, with the user's own cache, or with the cache disabled", () => {
    const base = { PATH: "/bin" };
    assert.equal(runnerEnvironment(base, null), base);
    const own = { NODE_COMPILE_CACHE: "/home/me/.cache/node" };
    assert.equal(runnerEnvironment(own, "/tmp/c"), own);
    const disabled = { NODE_DISABLE_COMPILE_CACHE: "1" };
    assert.equal(runnerEnvironment(disabled, "/tmp/c"), disabled);
  });

  it("a runner takes the postmaster's variables out of its environment, never the user's", () => {
    const ours = runnerEnvironment({ PATH: "/bin" }, "/tmp/c");
    forgetRunnerCompileCache(ours);
    assert.deepEqual(ours, { PATH: "/bin" });
    const users: NodeJS.ProcessEnv = { NODE_COMPILE_CACHE: "/home/me/.cache/node" };
    forgetRunnerCompileCache(users);
    assert.deepEqual(users, { NODE_COMPILE_CACHE: "/home/me/.cache/node" });
  });
});
