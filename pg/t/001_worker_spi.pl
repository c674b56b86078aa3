# PostgreSQL's src/test/modules/worker_spi/t/001_worker_spi.pl, against the TypeScript worker_spi
# (examples/worker_spi) run in-server by the bgworker extension.
#
# Run as a user that may run initdb (not root), with the extension installed:
#   prove -I $(pg_config --pgxs | xargs dirname)/../test/perl -I pg pg/t/
# BGWORKER_PACKAGE_DIR (default: this repository) and BGWORKER_NODE (default: node on PATH) say what runs.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BgworkerTest;

my $root = BgworkerTest::package_dir();
my $node = BgworkerTest::new_node('worker_spi');
$node->start;

note "testing dynamic bgworkers";

$node->safe_psql('postgres', 'CREATE EXTENSION bgworker;');

# Launch one dynamic worker, then wait for its initialization to complete: schema4.counted exists.
my $worker = "$root/examples/worker_spi/worker.ts";
my $result = $node->safe_psql('postgres',
	qq[SELECT bgworker.launch('$worker', 'worker_spi_main', 'worker_spi worker 4', 'worker_spi', 4) IS NOT NULL;]);
is($result, 't', "dynamic bgworker launched");
$node->poll_query_until(
	'postgres',
	qq[SELECT count(*) > 0 FROM information_schema.tables
	    WHERE table_schema = 'schema4' AND table_name = 'counted';]);
$node->safe_psql('postgres',
	"INSERT INTO schema4.counted VALUES ('total', 0), ('delta', 1);");
# A SIGHUP to the server reaches the worker's JavaScript: it folds the delta at once.
$node->reload;
$node->poll_query_until('postgres',
	qq[SELECT count(*) FROM schema4.counted WHERE type = 'delta';], '0');
$result = $node->safe_psql('postgres', 'SELECT * FROM schema4.counted;');
is($result, qq(total|1), 'dynamic bgworker correctly consumed tuple data');

# PostgreSQL 15 has no custom wait events: a worker waiting on its latch shows "Extension".
$result = $node->poll_query_until(
	'postgres',
	qq[SELECT wait_event FROM pg_stat_activity WHERE backend_type ~ 'worker_spi';],
	qq[Extension]);
is($result, 1, 'dynamic bgworker waits on its latch (wait event "Extension")');

$result = $node->safe_psql('postgres',
	q[SELECT kind, name, type, status FROM bgworker.workers() WHERE name = 'worker_spi worker 4';]);
is($result, 'dynamic|worker_spi worker 4|worker_spi|Started', 'bgworker.workers() shows the dynamic worker');

note "testing bgworkers loaded with shared_preload_libraries";

$node->safe_psql('postgres', q(CREATE DATABASE mydb;));
$node->safe_psql('postgres', q(CREATE ROLE myrole SUPERUSER LOGIN;));
$node->safe_psql('mydb', 'CREATE EXTENSION bgworker;');

# worker_spi.total_workers is WORKER_SPI_TOTAL_WORKERS in the TypeScript port: the server's environment.
$ENV{WORKER_SPI_TOTAL_WORKERS} = 3;
$node->append_conf(
	'postgresql.conf', qq{
bgworker.modules = '$root/examples/worker_spi/extension.ts'
bgworker.database = 'mydb'
max_worker_processes = 32
});
$node->restart;

ok( $node->poll_query_until(
		'mydb',
		qq[SELECT datname, count(datname), wait_event FROM pg_stat_activity
            WHERE backend_type = 'worker_spi' GROUP BY datname, wait_event;],
		'mydb|3|Extension'),
	'bgworkers all launched'
) or die "Timed out while waiting for bgworkers to be launched";

$result = $node->safe_psql('mydb',
	q[SELECT count(*) FROM bgworker.workers() WHERE kind = 'static' AND status = 'Started';]);
is($result, '3', 'bgworker.workers() shows the static workers');

# Dynamic workers as another role, on two databases (worker_spi_launch(index, dboid, roleoid)).
my $as = "$root/test/inserver/worker_spi_as.ts";
my $worker1_pid = $node->safe_psql('mydb',
	qq[SELECT bgworker.launch('$as', 'worker_spi_main_as', 'worker_spi worker 10 as myrole in mydb', 'worker_spi dynamic', 10);]);
my $worker2_pid = $node->safe_psql('mydb',
	qq[SELECT bgworker.launch('$as', 'worker_spi_main_as', 'worker_spi worker 11 as myrole in postgres', 'worker_spi dynamic', 11);]);

ok( $node->poll_query_until(
		'mydb',
		qq[SELECT datname, usename, wait_event FROM pg_stat_activity
            WHERE backend_type = 'worker_spi dynamic' AND
            pid IN ($worker1_pid, $worker2_pid) ORDER BY datname;],
		qq[mydb|myrole|Extension
postgres|myrole|Extension]),
	'dynamic bgworkers all launched'
) or die "Timed out while waiting for dynamic bgworkers to be launched";

# A database that does not accept connections: PostgreSQL's FATAL, in the log.
$node->safe_psql('postgres',
	q(CREATE DATABASE noconndb ALLOW_CONNECTIONS false;));
my $log_offset = -s $node->logfile;
$node->psql('postgres',
	qq[SELECT bgworker.launch('$as', 'worker_spi_main_as', 'worker_spi worker 12 as myrole in noconndb', 'worker_spi dynamic', 12);]);
$node->wait_for_log(
	qr/database "noconndb" is not currently accepting connections/,
	$log_offset);
pass('a database with ALLOW_CONNECTIONS false is refused with PostgreSQL\'s message');

# A role without LOGIN: PostgreSQL's FATAL, in the log.
$node->safe_psql(
	'postgres', qq[
  CREATE ROLE nologrole WITH NOLOGIN;
  GRANT CREATE ON DATABASE mydb TO nologrole;
]);
$log_offset = -s $node->logfile;
$node->psql('postgres',
	qq[SELECT bgworker.launch('$as', 'worker_spi_main_as', 'worker_spi worker 13 as nologrole in mydb', 'worker_spi dynamic', 13);]);
$node->wait_for_log(qr/role "nologrole" is not permitted to log in/,
	$log_offset);
pass('a NOLOGIN role is refused with PostgreSQL\'s message');

# EXECUTE on bgworker.launch is not granted to PUBLIC.
$node->safe_psql('postgres', q(CREATE ROLE plain LOGIN;));
my ($rc, $stdout, $stderr) = $node->psql('postgres',
	qq[SELECT bgworker.launch('$worker', 'worker_spi_main', 'worker_spi worker 14');],
	extra_params => [ '-U', 'plain' ]);
like($stderr, qr/permission denied for function launch/, 'launch is not granted to PUBLIC');

$node->stop;
ok(BgworkerTest::no_node_left($node), 'no Node process is left after the server stops');

done_testing();
