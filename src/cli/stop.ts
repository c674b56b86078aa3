/** `bgworker stop [--mode smart|fast|immediate] [--no-wait] [--timeout MS]`, as `pg_ctl stop`. */
import { connect } from "../control/client.js";
import { SHUTDOWN_MODES, type ShutdownMode } from "../status.js";
import { HELP } from "./help.js";
import { EXIT_OK, parseOrUsage, UsageError } from "./usage.js";
import { parseMilliseconds, parseSocket } from "./values.js";

const COMMAND = "stop";
/** pg_ctl's default wait. */
const DEFAULT_TIMEOUT_MS = 60_000;

export async function run(args: string[]): Promise<number> {
  const { values } = parseOrUsage(COMMAND, {
    args,
    options: {
      mode: { type: "string" },
      "no-wait": { type: "boolean" },
      timeout: { type: "string" },
      socket: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help === true) {
    process.stdout.write(HELP.stop ?? "");
    return EXIT_OK;
  }
  const mode = values.mode ?? "fast";
  if (!(SHUTDOWN_MODES as readonly string[]).includes(mode)) {
    throw new UsageError(`--mode ${JSON.stringify(mode)} must be smart, fast or immediate`, COMMAND);
  }
  const timeoutMs = values.timeout === undefined ? DEFAULT_TIMEOUT_MS : parseMilliseconds(COMMAND, "timeout", values.timeout);
  const client = await connect(parseSocket(COMMAND, values.socket));
  try {
    await client.stop(mode as ShutdownMode);
    if (values["no-wait"] === true) return EXIT_OK;
    // The connection ends when the postmaster has gone; the timer also keeps this process alive till then.
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs)));
    const timedOut = await Promise.race([client.closed.then(() => false), timeout]);
    clearTimeout(timer);
    if (timedOut) {
      throw new Error(`the postmaster on ${client.socketPath} did not stop within ${timeoutMs} ms (it is still shutting down)`);
    }
  } finally {
    await client.close();
  }
  return EXIT_OK;
}
