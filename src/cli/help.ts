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
  --spare-runners N           warm spare runners always kept booted for launches and restarts (default 1; 0: none)
  --max-spare-runners N       the most spares the pool grows to while launches outrun it (default 8)
  --socket PATH               the control socket (default $BGWORKER_SOCKET, else ./.bgworker/bgworker.sock)
  --shutdown-timeout MS       fast shutdown: SIGKILL what remains after MS (default 10000)
  --log-format text|json      PostgreSQL-style log lines, or one JSON object per line (default text)
  --log-file PATH|none        the log file, also written in the foreground (default ./.bgworker/log/bgworker.log)
  --log-rotation-size SIZE    rotate the log file at SIZE: 10MB, 512kB, bytes; 0 never (default 10MB)
  --log-files N               log files kept, the current one included (default 5)
  -d, --daemon                run in the background: return once ready, printing the postmaster's pid
  --http [HOST:]PORT          serve /metrics, /api/status, /api/events and a dashboard at / (host 127.0.0.1
                              by default; any non-loopback host needs a token)
  --http-token TOKEN          require TOKEN (Authorization: Bearer TOKEN or ?token=TOKEN); default
                              $BGWORKER_HTTP_TOKEN
  --cluster NAME              cluster mode: postmasters serving the same --database under the same NAME run each
                              setScope("cluster") worker exactly once across them (docs/cluster.md)
  --node-id ID                this node's id in the cluster (default HOSTNAME-PID)
  --lease-ms MS               a cluster lease's time to live, by the server's clock (default 5000)
  --renew-ms MS               how often a lease is renewed, and free leases polled (default 1000)
  -h, --help                  show this help

Environment:
  BGWORKER_PG_BINARIES        auto (system's, else npm's), system or npm: which PostgreSQL server binaries
  BGWORKER_STATE_DIR          where root keeps clusters the postgres user cannot reach in the project
                              (default /var/lib/bgworker)
`,
  status: `Usage: bgworker status [--json] [--all | --cluster] [--socket PATH]

Shows the postmaster and one row per worker slot, with each worker's uptime, CPU seconds and resident
memory read from the OS.

Options:
  --json           print the status report as JSON
  --all            list every postmaster this user runs on this host
  --cluster        the postmaster's cluster instead (started with --cluster): every node with its host,
                   pid, last heartbeat and whether it is live, and every cluster-scoped worker with the
                   node holding its lease, its generation and its expiry, all by the database server's clock
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
  restart: `Usage: bgworker restart TYPE|PID|HANDLE [--socket PATH]

Starts a new process now for a worker, whatever its restart time, counted in its restarts: a running
worker gets SIGTERM and starts again as soon as it exits; one waiting out its restart time starts at
once. TYPE restarts every registered worker of that type. A terminated worker is not restarted.

Options:
  --socket PATH    the postmaster's control socket (default: as for status)
  -h, --help       show this help
`,
  logs: `Usage: bgworker logs [-f] [-n N] [--worker TYPE|PID] [--json] [--log-file PATH]

Prints the end of the postmaster's log file (the nearest ./.bgworker/log/bgworker.log, walking up from
here), reading back through rotated files as needed.

Options:
  -f, --follow       keep printing new lines as they are written, across rotations (Ctrl-C ends)
  -n, --lines N      how many lines to print first (default 50)
  --worker TYPE|PID  only the lines about that worker type or process
  --json             one JSON object per line, whatever the file's format
  --log-file PATH    read this file instead
  -h, --help         show this help
`,
  "pg-install": `Usage: bgworker pg-install [--pg-config PATH]

Builds the bgworker PostgreSQL extension (PGXS) and installs it into the server that pg_config names
(default: the server binaries bgworker would use), for in-server mode: workers that PostgreSQL itself
registers, starts and restarts (docs/in-server.md). Needs the server's development headers (Debian:
postgresql-server-dev-NN), make and a C compiler. Prints what it installed where.

Options:
  --pg-config PATH  the pg_config of the server to install into
  -h, --help        show this help
`,
  startup: `Usage: bgworker startup systemd EXTENSION... [start options]

Prints a systemd unit that runs "bgworker start EXTENSION... [options]" for this directory, with the
node and bgworker found now, as the current user; the postmaster runs in the foreground under systemd,
which restarts it on failure and stops it with SIGINT (fast shutdown). Install it with:

  bgworker startup systemd extension.ts | sudo tee /etc/systemd/system/myapp.service
  sudo systemctl daemon-reload && sudo systemctl enable --now myapp

Options:
  -h, --help       show this help
`,
};

export const MAIN_HELP = `Usage: bgworker COMMAND [options]        (alias: bgw)

PostgreSQL's background workers, for TypeScript.

Commands:
  start EXTENSION...   run a postmaster (in the foreground, or in the background with -d)
  status               show the postmaster and its worker slots (--all: every postmaster,
                       --cluster: the nodes and leases of its cluster)
  logs                 print or follow the postmaster's log file
  restart TYPE|PID|HANDLE
                       start a new process for a worker now
  launch               start a dynamic background worker
  terminate PID|HANDLE terminate a background worker
  stop                 shut the postmaster down
  reload               SIGHUP to every worker, reload a managed server's configuration
  startup systemd      print a systemd unit for this project
  pg-install           build and install the PostgreSQL extension for in-server mode

Run "bgworker COMMAND --help" for a command's options.

Options:
  -h, --help       show this help
  -v, --version    print the version

Exit status: 0 success, 1 failure, 2 usage error.
`;
