/** `bgworker restart TYPE|PID|HANDLE`: a new process for that worker now, whatever its restart time. */
import { connect } from "../control/client.js";
import { parseHandle } from "../handle-format.js";
import { HELP } from "./help.js";
import { EXIT_OK, expectPositionals, parseOrUsage, validating } from "./usage.js";
import { parsePid, parseSocket } from "./values.js";

const COMMAND = "restart";
/** What a handle looks like (`bgw1:...`); anything else that is not a pid is a worker type. */
const HANDLE_PREFIX = /^bgw[0-9]+:/;

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parseOrUsage(COMMAND, {
    args,
    allowPositionals: true,
    options: {
      socket: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help === true) {
    process.stdout.write(HELP.restart ?? "");
    return EXIT_OK;
  }
  const [text = ""] = expectPositionals(COMMAND, positionals, ["TYPE, PID or HANDLE"]);
  const pid = parsePid(text);
  // A malformed handle is a usage error, found before connecting.
  const target = pid ?? (HANDLE_PREFIX.test(text) ? validating(COMMAND, () => (parseHandle(text), text)) : { type: text });
  const client = await connect(parseSocket(COMMAND, values.socket));
  try {
    await client.restart(target);
  } finally {
    await client.close();
  }
  return EXIT_OK;
}
