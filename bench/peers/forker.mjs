// The bare-fork floor of the scale rows: a plain `node` (no tsx, no bgworker) that forks N plain children
// (peers/child.mjs "hello") at once, as a postmaster forks its workers, and times them until each has sent its
// first IPC message. Prints one JSON line: from before the first fork() to the last first message (ms), and
// how long the fork() calls themselves took. Then stays, with every child idle and connected, until the bench
// has read the tree's memory and sends SIGTERM (or until stdin closes): the children end as their channels close.
//   forker.mjs N
import { fork } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const CHILD = join(dirname(fileURLToPath(import.meta.url)), "child.mjs");
const count = Number(process.argv[2]);
const now = () => performance.timeOrigin + performance.now();
const children = [];
let messages = 0;
let exitedEarly = 0;
const t0 = now();
const done = new Promise((resolve) => {
  for (let i = 0; i < count; i++) {
    const child = fork(CHILD, ["hello"], { execArgv: [], stdio: ["ignore", "ignore", "inherit", "ipc"] });
    let spoke = false;
    child.once("message", () => {
      spoke = true;
      messages += 1;
      if (messages + exitedEarly === count) resolve(now());
    });
    child.once("exit", () => {
      if (spoke) return;
      exitedEarly += 1; // counted, so that the wait ends; the bench reports it
      if (messages + exitedEarly === count) resolve(now());
    });
    children.push(child);
  }
});
const forkedMs = now() - t0;
const last = await done;
process.stdout.write(JSON.stringify({ count, allMs: last - t0, forkCallsMs: forkedMs, exitedEarly }) + "\n");
const end = () => {
  for (const child of children) if (child.connected) child.disconnect();
  setTimeout(() => process.exit(0), 200);
};
process.once("SIGTERM", end);
process.stdin.on("end", end);
process.stdin.resume();
