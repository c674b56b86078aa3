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

/** The environment variable `start` reads the database URL from (src/cli/start.ts reads it too). */
export const DATABASE_URL_ENV = "BGWORKER_DATABASE_URL";

/**
 * The detached postmaster's arguments and environment, from the starter's `start` arguments: no
 * `-d`/`--daemon`, and a `--database URL` (or `--database=URL`) moved to BGWORKER_DATABASE_URL, which
 * `start` reads when no database flag is given, so that no password is in the child's /proc/PID/cmdline
 * (readable by every local user; its environment is readable by its owner only). Arguments after `--` are
 * extensions and stay as they are.
 */
export function detachedInvocation(args: readonly string[], env: NodeJS.ProcessEnv): { args: string[]; env: NodeJS.ProcessEnv } {
  const out: string[] = [];
  let url: string | undefined;
  for (let index = 0; index < args.length; index += 1) {
    const arg = args[index]!;
    if (arg === "--") {
      out.push(...args.slice(index));
      break;
    }
    if (arg === "-d" || arg === "--daemon") continue;
    if (arg === "--database" && index + 1 < args.length) {
      url = args[index + 1]!;
      index += 1;
      continue;
    }
    if (arg.startsWith("--database=")) {
      url = arg.slice("--database=".length);
      continue;
    }
    out.push(arg);
  }
  const childEnv: NodeJS.ProcessEnv = { ...env, [DAEMON_ENV]: "1" };
  if (url !== undefined) childEnv[DATABASE_URL_ENV] = url;
  return { args: out, env: childEnv };
}

/**
 * Starts `node [execArgv] SCRIPT start ARGS` detached and waits for its verdict. Resolves with its pid
 * once ready; rejects with its reason (or its exit) otherwise.
 */
export async function startDetached(options: { script: string; args: readonly string[]; cwd: string; logFile: string }): Promise<number> {
  fs.mkdirSync(path.dirname(options.logFile), { recursive: true, mode: 0o700 });
  const errFd = fs.openSync(options.logFile, "a", 0o600);
  const invocation = detachedInvocation(options.args, process.env);
  const child = spawn(process.execPath, [...process.execArgv, options.script, "start", ...invocation.args], {
    cwd: options.cwd,
    detached: true,
    env: invocation.env,
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
