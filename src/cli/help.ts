/** The CLI's help texts, one per command; `bgworker --help` lists them all. */

export const HELP: Readonly<Record<string, string>> = {
  start: `Usage: bgworker start EXTENSION... [options]

Runs a postmaster in the foreground: loads each extension module (.ts .mts .cts .js .mjs .cjs) and runs its _PG_init(),
serves a database, and starts the registered workers. Prints "ready" once every extension is initialised.
SIGTERM is a smart shutdown, SIGINT (Ctrl-C) a fast one, SIGQUIT an immediate one.

Options:
  --database URL              serve an existing server (never started or stopped by bgworker)
  --pgdata DIR                run a PostgreSQL cluster in DIR (created on first run)
  --no-database               serve no database (workers that request SPI are refused)
                              (default: $BGWORKER_DATABASE_URL if set, else a cluster managed
                              in ./.bgworker/pgdata; passwords: PGPASSWORD, PGPASSFILE, ~/.pgpass)
  --max-worker-processes N    worker slots shared by static and dynamic workers (default 8)
  --socket PATH               the control socket (default $BGWORKER_SOCKET, else ./.bgworker/bgworker.sock)
  --shutdown-timeout MS       fast shutdown: SIGKILL what remains after MS (default 10000)
  --log-format text|json      PostgreSQL-style log lines, or one JSON object per line (default text)
  -h, --help                  show this help

Environment:
  BGWORKER_PG_BINARIES        auto (system's, else npm's), system or npm: which PostgreSQL server binaries
  BGWORKER_STATE_DIR          where root keeps clusters the postgres user cannot reach in the project
                              (default /var/lib/bgworker)
`,
  status: `Usage: bgworker status [--json] [--socket PATH]

Shows the postmaster and one row per worker slot.

Options:
  --json           print the status report as JSON
  --socket PATH    the postmaster's control socket (default $BGWORKER_SOCKET, else the nearest
                   .bgworker/bgworker.sock at or above the current directory)
  -h, --help       show this help
`,
  launch: `Usage: bgworker launch --library L --function F [options]

Starts a dynamic background worker and prints its handle (with --wait, its pid once it runs).

Options:
  --library L         module holding the worker's function: a path (made absolute from here) or a package
  --function F        exported function to run, called as await F(argument)
  --name N            worker name (default: the function's name)
  --type T            worker type, shown in logs and status (default: the name)
  --arg DATUM         argument: 123 (number), 123n (bigint), true, false or null (default null);
                      for a negative value write --arg=-1
  --extra S           up to 128 bytes the worker reads with BackgroundWorker.getExtra()
  --spi               the worker opens a database session (start time becomes recovery-finished)
  --shmem             the worker attaches to shared memory
  --start-time T      postmaster | consistent | recovery-finished (or PostmasterStart, ConsistentState,
                      RecoveryFinished); default postmaster, or recovery-finished with --spi
  --restart-time MS   restart MS milliseconds after exit code 1 or a crash, or "never" (default never)
  --wait              wait until the worker's function is running and print its pid instead
  --json              print {"handle", "pid"} as JSON
  --socket PATH       the postmaster's control socket (default: as for status)
  -h, --help          show this help
`,
  terminate: `Usage: bgworker terminate PID|HANDLE [--wait] [--socket PATH]

Terminates a background worker: SIGTERM if it is running, unregistered if it has not started.
A terminated worker is never restarted.

Options:
  --wait           wait until the worker has exited
  --socket PATH    the postmaster's control socket (default: as for status)
  -h, --help       show this help
`,
  stop: `Usage: bgworker stop [--mode smart|fast|immediate] [--no-wait] [--timeout MS] [--socket PATH]

Shuts the postmaster down and waits until it has exited.

Options:
  --mode M         smart: no new launches, let dynamic workers finish, then as fast;
                   fast: SIGTERM every worker, SIGKILL after the shutdown timeout (default);
                   immediate: SIGKILL every worker now
  --no-wait        return once the postmaster has accepted the request
  --timeout MS     how long to wait for the postmaster to exit (default 60000)
  --socket PATH    the postmaster's control socket (default: as for status)
  -h, --help       show this help
`,
  reload: `Usage: bgworker reload [--socket PATH]

Reloads, as SIGHUP to the postmaster or pg_ctl reload: every running worker gets SIGHUP (its
sighupReceived() flag and latch are set where it attached SIGHUP; ignored otherwise), and a managed
PostgreSQL server re-reads its configuration files. Nothing is stopped.

Options:
  --socket PATH    the postmaster's control socket (default ./.bgworker/bgworker.sock)
  -h, --help       show this help
`,
};

export const MAIN_HELP = `Usage: bgworker COMMAND [options]        (alias: bgw)

PostgreSQL's background workers, for TypeScript.

Commands:
  start EXTENSION...   run a postmaster in the foreground
  status               show the postmaster and its worker slots
  launch               start a dynamic background worker
  terminate PID|HANDLE terminate a background worker
  stop                 shut the postmaster down
  reload               SIGHUP to every worker, reload a managed server's configuration

Run "bgworker COMMAND --help" for a command's options.

Options:
  -h, --help       show this help
  -v, --version    print the version

Exit status: 0 success, 1 failure, 2 usage error.
`;
