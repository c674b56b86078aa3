/** `bgworker reload`: as SIGHUP to the postmaster, or `pg_ctl reload`. */
import { connect } from "../control/client.js";
import { HELP } from "./help.js";
import { EXIT_OK, parseOrUsage } from "./usage.js";
import { parseSocket } from "./values.js";

const COMMAND = "reload";

export async function run(args: string[]): Promise<number> {
  const { values } = parseOrUsage(COMMAND, {
    args,
    options: {
      socket: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help === true) {
    process.stdout.write(HELP.reload ?? "");
    return EXIT_OK;
  }
  const client = await connect(parseSocket(COMMAND, values.socket));
  try {
    await client.reload();
  } finally {
    await client.close();
  }
  // As pg_ctl reload.
  process.stdout.write("postmaster signaled\n");
  return EXIT_OK;
}
