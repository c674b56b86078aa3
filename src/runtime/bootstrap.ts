/**
 * The first code of every runner process. Before anything that could stall (the TypeScript loader, the
 * runtime's modules), it makes sure a runner whose postmaster is gone does not linger: a spare that has not
 * become a worker exits as soon as its IPC channel closes. Then it hands over to the runner.
 */
import { processRole } from "../context.js";
import { ignoreSignals } from "./signals.js";

function orphanedSpare(): boolean {
  // Once the runner has become a worker, the worker's own postmaster-death handling applies.
  return processRole() === undefined;
}

process.once("disconnect", () => {
  if (orphanedSpare()) process.exit(0);
});
if (!process.connected) process.exit(0);
// No debugger on SIGUSR1, no death on SIGUSR2; a spare ignores SIGHUP as a worker does before attaching.
ignoreSignals(["SIGHUP"]);

// Loaded after the above, so that nothing it loads delays them (built, the runner is part of the core chunk
// this module has loaded already, scripts/bundle.mjs: the import costs no file). TypeScript support is not
// installed here: a `.ts` library is loaded as compiled files where it can be (typescript/direct.ts), and the
// module hooks are installed by the first import that needs them (modules.ts, importFrom).
const { runRunner } = await import("./runner.js");
runRunner();
