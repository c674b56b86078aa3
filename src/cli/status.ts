/**
 * `bgworker status [--json] [--socket PATH]`; `status --all`: every postmaster of this user on this host;
 * `status --cluster`: the nodes and leases of the postmaster's cluster (SPEC §10).
 */
import { clusterStatusOf, connect } from "../control/client.js";
import { listPostmasters, type RegistryEntry } from "../ops/registry.js";
import type { StatusReport } from "../status.js";
import { formatClusterStatus, formatDuration, formatStatus, table } from "./format-status.js";
import { HELP } from "./help.js";
import { EXIT_OK, parseOrUsage, UsageError } from "./usage.js";
import { parseSocket } from "./values.js";

export async function run(args: string[]): Promise<number> {
  const { values } = parseOrUsage("status", {
    args,
    options: {
      json: { type: "boolean" },
      all: { type: "boolean" },
      cluster: { type: "boolean" },
      socket: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help === true) {
    process.stdout.write(HELP.status ?? "");
    return EXIT_OK;
  }
  if (values.all === true) {
    if (values.socket !== undefined) throw new UsageError("--all and --socket exclude each other", "status");
    if (values.cluster === true) throw new UsageError("--all and --cluster exclude each other", "status");
    return all(values.json === true);
  }
  const client = await connect(parseSocket("status", values.socket));
  try {
    if (values.cluster === true) {
      // Rejects with one line (ERR_BGWORKER_POSTMASTER_STATE) for a postmaster not in a cluster: exit 1.
      const status = await clusterStatusOf(client);
      process.stdout.write((values.json === true ? JSON.stringify(status, null, 2) : formatClusterStatus(status)) + "\n");
    } else {
      const report = await client.statusReport();
      process.stdout.write((values.json === true ? JSON.stringify(report, null, 2) : formatStatus(report, Date.now())) + "\n");
    }
  } finally {
    await client.close();
  }
  return EXIT_OK;
}

/** A registered postmaster's status, or why it could not be had (it may be starting or stopping). */
async function statusOf(entry: RegistryEntry): Promise<{ report: StatusReport } | { error: string }> {
  if (entry.socket === null) return { error: "no control socket" };
  try {
    const client = await connect(entry.socket);
    try {
      return { report: await client.statusReport() };
    } finally {
      await client.close();
    }
  } catch (error) {
    return { error: error instanceof Error ? error.message : String(error) };
  }
}

async function all(json: boolean): Promise<number> {
  const entries = listPostmasters();
  const results = await Promise.all(entries.map(async (entry) => ({ entry, ...(await statusOf(entry)) })));
  if (json) {
    process.stdout.write(JSON.stringify(results, null, 2) + "\n");
    return EXIT_OK;
  }
  if (results.length === 0) {
    process.stdout.write("(no postmasters running for this user)\n");
    return EXIT_OK;
  }
  const rows = results.map((result) => {
    const report = "report" in result ? result.report : undefined;
    const workers = report?.workers ?? [];
    return [
      String(result.entry.pid),
      report === undefined ? "unreachable" : report.postmaster.phase,
      report === undefined ? "-" : formatDuration(report.postmaster.uptimeMs),
      report === undefined ? "-" : `${workers.filter((w) => w.state === "running").length}/${workers.filter((w) => w.state !== "stopped").length}`,
      result.entry.http ?? "-",
      result.entry.cwd,
    ];
  });
  process.stdout.write(table([["PID", "PHASE", "UP", "RUNNING", "HTTP", "DIRECTORY"], ...rows]) + "\n");
  return EXIT_OK;
}
