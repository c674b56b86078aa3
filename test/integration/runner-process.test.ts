/**
 * Runner processes started with posix_spawn (src/postmaster/runner-process.ts, native/spawn.cc): a child so
 * started gets what child_process.fork() gives a runner (the IPC channel, its output on pipes, a session of
 * its own, no blocked signals, no descriptor of the postmaster's but its five) and reports its exit and its
 * last words in the order fork() does. Each test compares with a fork() of the same child where fork() is
 * the reference.
 */
import assert from "node:assert/strict";
import { fork } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { spawnNode, type RunnerProcess } from "../../src/postmaster/runner-process.js";

const CHILD = join(fileURLToPath(new URL("../fixtures/runner-process", import.meta.url)), "child.mjs");

interface About {
  argv: string[];
  env: { probe: string | null; channels: number };
  session: number;
  group: number;
  blocked: string;
  ignored: string;
  fds: Record<string, string | null>;
  stdin: string;
}

/** Children started and not yet exited: the ones a failed test leaves are killed (an exited one's pid may be another's now). */
const running = new Set<RunnerProcess>();
after(() => {
  for (const child of running) process.kill(child.pid!, "SIGKILL");
});

function spawnChild(args: string[] = []): RunnerProcess {
  const child = spawnNode([CHILD, ...args], { ...process.env, RUNNER_PROCESS_PROBE: "probe value", NODE_CHANNEL_FD: "9" });
  assert.ok(child !== undefined, "the addon can spawn on Linux");
  running.add(child);
  child.once("exit", () => running.delete(child));
  return child;
}

/** The next message that `test` accepts. */
function nextMessage<T>(child: RunnerProcess, test: (message: Record<string, unknown>) => boolean): Promise<T> {
  return new Promise((resolve) => {
    const listener = (message: unknown): void => {
      if (typeof message === "object" && message !== null && test(message as Record<string, unknown>)) resolve(message as T);
    };
    child.on("message", listener);
  });
}

function lines(child: RunnerProcess): { stdout: string[]; stderr: string[] } {
  const seen = { stdout: [] as string[], stderr: [] as string[] };
  for (const stream of ["stdout", "stderr"] as const) createInterface({ input: child[stream]! }).on("line", (line) => seen[stream].push(line));
  return seen;
}

describe("runner processes started with posix_spawn", { timeout: 60_000 }, () => {
  it("get the channel, the arguments and the environment, and a session of their own with no signal blocked, as fork() gives", async () => {
    const child = spawnChild(["one", "two words"]);
    await nextMessage(child, (m) => m.ready === true);
    child.send({ ask: "about" } as never);
    const about = await nextMessage<About>(child, (m) => "session" in m);
    assert.deepEqual(about.argv, ["one", "two words"]);
    assert.equal(about.session, child.pid);
    assert.equal(about.group, child.pid);
    assert.equal(about.stdin, "/dev/null");

    const reference = fork(CHILD, [], { execArgv: [], stdio: ["ignore", "pipe", "pipe", "ipc", "pipe"], serialization: "json", detached: true });
    try {
      reference.stdout!.resume();
      reference.stderr!.resume();
      await once(reference, "message");
      reference.send({ ask: "about" });
      const [forked] = (await once(reference, "message")) as [About];
      // The parent's own NODE_CHANNEL_FD is not passed on: the child's channel is its descriptor 3, which Node
      // takes (and takes out of the environment) as it does a forked child's.
      assert.deepEqual(about.env, { probe: "probe value", channels: forked.env.channels });
      assert.equal(about.blocked, forked.blocked, "blocked signals");
      // Signals 1 to 31 as a forked child has them (glibc's posix_spawn leaves its own two real-time signals,
      // 32 and 33, ignored in the child when the parent handles them: glibc takes them back on first use).
      const standard = (mask: string): bigint => BigInt(`0x${mask}`) & 0x7fffffffn;
      assert.equal(standard(about.ignored), standard(forked.ignored), `ignored signals: ${about.ignored} against fork()'s ${forked.ignored}`);
      // Descriptors 0 to 4 as fork() lays them out (a socket for the channel, pipes for the others); nothing
      // else of this process's: the rest are Node's own (its event loop's), as many as in the forked child.
      assert.match(about.fds["1"]!, /^pipe:/);
      assert.match(about.fds["2"]!, /^pipe:/);
      assert.match(about.fds["3"]!, /^socket:/);
      assert.match(about.fds["4"]!, /^pipe:/);
      assert.equal(Object.keys(about.fds).length, Object.keys(forked.fds).length, `descriptors: ${JSON.stringify(about.fds)} against fork()'s ${JSON.stringify(forked.fds)}`);
    } finally {
      reference.kill("SIGKILL");
      child.disconnect();
    }
    // Nobody reads its output: it is drained at the exit, so "close" comes.
    await new Promise((resolve) => child.once("close", () => resolve(undefined)));
  });

  it("report messages and output before the exit's close, with the exit code", async () => {
    const child = spawnChild();
    const seen = lines(child);
    const events: string[] = [];
    child.on("message", (m) => events.push(`message ${JSON.stringify(m)}`));
    const exited = new Promise<[number | null, string | null]>((resolve) => child.once("exit", (code, signal) => resolve([code, signal])));
    const closed = new Promise<void>((resolve) => child.once("close", () => resolve()));
    await nextMessage(child, (m) => m.ready === true);
    for (let i = 0; i < 200; i++) child.send({ ask: "echo", value: `${i} ${"x".repeat(i * 50)}` } as never);
    child.send({ ask: "exit", code: 3 } as never);
    assert.deepEqual(await exited, [3, null]);
    await closed;
    assert.deepEqual(seen, { stdout: ["last line out"], stderr: ["last line err"] });
    const echoes = events.filter((e) => e.startsWith('message {"echo"'));
    assert.equal(echoes.length, 200, "every reply, however long, one message each");
    assert.equal(events.at(-1), 'message {"bye":true}');
    assert.equal(child.connected, false);
  });

  it("deliver the last messages of a runner that exited before they were read, though a send to it failed", async () => {
    const child = spawnChild();
    await nextMessage(child, (m) => m.ready === true);
    const errors: Error[] = [];
    child.on("error", (error) => errors.push(error));
    const last = nextMessage<{ last: string }>(child, (m) => "last" in m);
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.send({ ask: "lastWords", value: "goodbye" } as never);
    // This thread reads nothing until the child has exited with its message written: then a send fails.
    const stat = `/proc/${child.pid}/stat`;
    const deadline = Date.now() + 20_000;
    while (!readFileSync(stat, "utf8").split(") ")[1]!.startsWith("Z") && Date.now() < deadline) {
      // waiting without yielding to the event loop, so the runner's message stays unread
    }
    child.send({ ask: "echo", value: "too late" } as never);
    assert.deepEqual(await last, { last: "goodbye" });
    await exited;
    await new Promise((resolve) => setImmediate(resolve));
    assert.ok(errors.every((error) => (error as NodeJS.ErrnoException).code === "EPIPE"), `only EPIPE: ${errors.map(String).join("; ")}`);
  });

  it("report a death by signal with the name a forked child's exit gives it", async () => {
    // SIGABRT and SIGIO share their numbers with SIGIOT and SIGPOLL: the name is Node's.
    for (const signal of ["SIGKILL", "SIGABRT", "SIGIO", "SIGSEGV"] as const) {
      const child = spawnChild();
      await nextMessage(child, (m) => m.ready === true);
      const exited = new Promise<[number | null, string | null]>((resolve) => child.once("exit", (code, signal) => resolve([code, signal])));
      process.kill(child.pid!, signal);
      const reference = fork(CHILD, [], { execArgv: [], stdio: ["ignore", "ignore", "ignore", "ipc"] });
      await once(reference, "message");
      const forkedExit = once(reference, "exit");
      reference.kill(signal);
      assert.deepEqual(await exited, await forkedExit, signal);
    }
  });

  it("see disconnect() as the end of their channel, and many exits at once are each reported", async () => {
    const children = Array.from({ length: 8 }, () => spawnChild());
    await Promise.all(children.map((child) => nextMessage(child, (m) => m.ready === true)));
    const exits = children.map((child) => new Promise<[number | null, string | null]>((resolve) => child.once("exit", (code, signal) => resolve([code, signal]))));
    const closes = children.map((child) => new Promise((resolve) => child.once("close", () => resolve(undefined))));
    const outputs = children.map(lines);
    for (const child of children) child.disconnect();
    assert.deepEqual(await Promise.all(exits), children.map(() => [7, null]));
    await Promise.all(closes);
    for (const output of outputs) assert.deepEqual(output.stdout, ["disconnected"]);
  });

  it("fail to start with the system's error, leaving no descriptor open", async () => {
    const { readdirSync } = await import("node:fs");
    const before = readdirSync("/proc/self/fd").length;
    const saved = process.execPath;
    Object.defineProperty(process, "execPath", { value: "/nonexistent/node", configurable: true });
    try {
      assert.throws(() => spawnNode([CHILD], process.env), { code: "ENOENT", syscall: "posix_spawn" });
    } finally {
      Object.defineProperty(process, "execPath", { value: saved, configurable: true });
    }
    assert.equal(readdirSync("/proc/self/fd").length, before);
  });
});
