/**
 * `bgworker startup systemd`: a unit that runs this project's postmaster in the foreground under systemd
 * (systemd is the supervisor; `--daemon` is for shells). Rationale for each choice is in the unit itself.
 */
export interface UnitOptions {
  /** The service's short name (the project directory's), for the environment file's suggested path. */
  readonly name: string;
  readonly description: string;
  readonly workingDirectory: string;
  /** The full command line: node, the CLI, `start`, extensions and options. */
  readonly execStart: readonly string[];
  readonly user: string;
  /** The postmaster's fast-shutdown timeout, to leave systemd enough time before its own SIGKILL. */
  readonly shutdownTimeoutMs: number;
  readonly environment?: Readonly<Record<string, string>>;
}

/** systemd's quoting: words with spaces, quotes, backslashes or `$`/`%` are double-quoted and escaped. */
export function systemdQuote(word: string): string {
  const escaped = word.replace(/%/g, "%%").replace(/\$/g, "$$$$");
  if (escaped !== "" && /^[A-Za-z0-9_@%+=:,./-]+$/.test(escaped)) return escaped;
  return `"${escaped.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

export function systemdUnit(options: UnitOptions): string {
  // Room for the workers' SIGTERM grace, then a managed PostgreSQL's fast shutdown.
  const stopSeconds = Math.ceil(options.shutdownTimeoutMs / 1000) + 30;
  const environment = Object.entries(options.environment ?? {}).map(([key, value]) => `Environment=${systemdQuote(`${key}=${value}`)}\n`).join("");
  return `[Unit]
Description=${options.description}
After=network.target postgresql.service
Wants=network.target

[Service]
Type=simple
User=${options.user}
WorkingDirectory=${systemdQuote(options.workingDirectory)}
ExecStart=${options.execStart.map(systemdQuote).join(" ")}
${environment}# Secrets (BGWORKER_DATABASE_URL, BGWORKER_HTTP_TOKEN, PGPASSWORD) belong in an owner-only file, not here:
#EnvironmentFile=/etc/bgworker/${options.name.replace(/[^A-Za-z0-9_.-]+/g, "-")}.env
# bgworker runs in the foreground under systemd; its log goes to the journal and to .bgworker/log/.
# SIGINT is bgworker's fast shutdown, as pg_ctl stop's default: workers get SIGTERM, then SIGKILL after the
# shutdown timeout, then a managed PostgreSQL is stopped. (SIGTERM would be a smart shutdown, which waits for
# dynamic workers to finish on their own and can outlast TimeoutStopSec.)
KillSignal=SIGINT
# Only the postmaster gets KillSignal; it stops its workers and PostgreSQL itself. Anything left at the
# timeout is killed by systemd.
KillMode=mixed
TimeoutStopSec=${stopSeconds}
# A postmaster that exits with an error (or is killed) is started again; a clean stop is left alone.
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
`;
}
