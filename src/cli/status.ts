/** `bgworker status [--json] [--socket PATH]`. */
import { connect } from "../control/client.js";
import { formatStatus } from "./format-status.js";
import { HELP } from "./help.js";
import { EXIT_OK, parseOrUsage } from "./usage.js";
import { parseSocket } from "./values.js";

export async function run(args: string[]): Promise<number> {
  const { values } = parseOrUsage("status", {
    args,
    options: {
      json: { type: "boolean" },
      socket: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help === true) {
    process.stdout.write(HELP.status ?? "");
    return EXIT_OK;
  }
  const client = await connect(parseSocket("status", values.socket));
  try {
    const report = await client.statusReport();
    process.stdout.write((values.json === true ? JSON.stringify(report, null, 2) : formatStatus(report, Date.now())) + "\n");
  } finally {
    await client.close();
  }
  return EXIT_OK;
}
