/** `bgworker terminate PID|HANDLE [--wait]`. */
import { setTimeout as sleep } from "node:timers/promises";
import { connect, type PostmasterClient } from "../control/client.js";
import { BackgroundWorkerStatus } from "../errors.js";
import { parseHandle } from "../handle-format.js";
import { HELP } from "./help.js";
import { EXIT_OK, expectPositionals, parseOrUsage, validating } from "./usage.js";
import { parsePid, parseSocket } from "./values.js";

const COMMAND = "terminate";
/**
 * The CLI is not the worker's notify pid, so the postmaster would answer its waits Untracked (as
 * PostgreSQL does); `--wait` therefore asks for the worker's state until it has stopped.
 */
const POLL_MS = 50;

async function waitForHandle(client: PostmasterClient, handle: string): Promise<void> {
  const worker = client.attach(handle);
  for (;;) {
    const status = await worker.status();
    if (status === BackgroundWorkerStatus.Stopped) return;
    if (status === BackgroundWorkerStatus.PostmasterDied) throw new Error(`the postmaster on ${client.socketPath} died while waiting`);
    await sleep(POLL_MS);
  }
}

async function waitForPid(client: PostmasterClient, pid: number): Promise<void> {
  for (;;) {
    const rows = await client.status();
    if (!rows.some((row) => row.pid === pid && (row.state === "running" || row.state === "starting"))) return;
    await sleep(POLL_MS);
  }
}

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parseOrUsage(COMMAND, {
    args,
    allowPositionals: true,
    options: {
      wait: { type: "boolean" },
      socket: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help === true) {
    process.stdout.write(HELP.terminate ?? "");
    return EXIT_OK;
  }
  const [text = ""] = expectPositionals(COMMAND, positionals, ["PID or HANDLE"]);
  const pid = parsePid(text);
  // Anything not a pid must be a handle: a malformed one is a usage error, found before connecting.
  const handle = pid === undefined ? validating(COMMAND, () => (parseHandle(text), text)) : undefined;
  const client = await connect(parseSocket(COMMAND, values.socket));
  try {
    await client.terminate(pid ?? text);
    if (values.wait === true) {
      if (handle !== undefined) await waitForHandle(client, handle);
      else if (pid !== undefined) await waitForPid(client, pid);
    }
  } finally {
    await client.close();
  }
  return EXIT_OK;
}
