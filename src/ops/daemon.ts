/**
 * `bgworker start --daemon`: the command starts the postmaster as a detached process (its own session, no
 * terminal; stdout ignored, stderr appended to the log file for anything written outside the log) and
 * returns once the postmaster says it is ready, or failed, over a one-shot IPC channel.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

/** Set in the detached postmaster's environment: it reports readiness to its starter and writes no terminal. */
export const DAEMON_ENV = "BGWORKER_DAEMON_CHILD";

export type DaemonMessage = { readonly t: "ready"; readonly pid: number } | { readonly t: "failed"; readonly message: string };

export function isDaemonChild(env: NodeJS.ProcessEnv = process.env): boolean {
  return env[DAEMON_ENV] === "1" && typeof process.send === "function";
}

/** In the detached postmaster: tells the starter, then drops the channel so that the starter can exit. */
export async function reportToStarter(message: DaemonMessage): Promise<void> {
  if (typeof process.send !== "function" || !process.connected) return;
  await new Promise<void>((resolve) => process.send!(message, undefined, {}, () => resolve()));
  if (process.connected) process.disconnect();
}

/** Arguments without `-d`/`--daemon`, for the detached process. */
export function withoutDaemonFlag(args: readonly string[]): string[] {
  return args.filter((arg) => arg !== "-d" && arg !== "--daemon");
}

/**
 * Starts `node [execArgv] SCRIPT start ARGS` detached and waits for its verdict. Resolves with its pid
 * once ready; rejects with its reason (or its exit) otherwise.
 */
export async function startDetached(options: { script: string; args: readonly string[]; cwd: string; logFile: string }): Promise<number> {
  fs.mkdirSync(path.dirname(options.logFile), { recursive: true, mode: 0o700 });
  const errFd = fs.openSync(options.logFile, "a", 0o600);
  const child = spawn(process.execPath, [...process.execArgv, options.script, "start", ...withoutDaemonFlag(options.args)], {
    cwd: options.cwd,
    detached: true,
    env: { ...process.env, [DAEMON_ENV]: "1" },
    stdio: ["ignore", "ignore", errFd, "ipc"],
  });
  fs.closeSync(errFd);
  try {
    return await new Promise<number>((resolve, reject) => {
      child.once("message", (message: DaemonMessage) => {
        if (message.t === "ready") resolve(message.pid);
        else reject(new Error(message.message));
      });
      child.once("error", (error) => reject(new Error(`cannot start the postmaster: ${error.message}`)));
      // "close", not "exit": it comes after the IPC channel has delivered every message (the failure's reason).
      child.once("close", (code, signal) =>
        reject(new Error(`the postmaster exited before it was ready (${signal ?? `exit code ${code}`}); see ${options.logFile}`)),
      );
    });
  } finally {
    child.removeAllListeners();
    if (child.connected) child.disconnect();
    child.unref();
  }
}
