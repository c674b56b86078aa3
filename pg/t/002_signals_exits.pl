# SPEC §9 beyond PostgreSQL's worker_spi test: signals, exits, transactions and the server's own life.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use BgworkerTest;

my $root = BgworkerTest::package_dir();
my $fixture = "$root/test/inserver/basic.ts";
my $node = BgworkerTest::new_node('signals', "max_worker_processes = 6\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION bgworker;');

sub launch
{
	my ($function, $name, $arg, $restart_ms) = @_;
	$arg //= 'NULL';
	$restart_ms //= 'NULL';
	return $node->safe_psql('postgres',
		qq[SELECT bgworker.launch('$fixture', '$function', '$name', 'fixture', $arg, true, $restart_ms);]);
}

sub pid_of
{
	my ($name) = @_;
	return $node->safe_psql('postgres', qq[SELECT pid FROM bgworker.workers() WHERE name = '$name' AND status = 'Started';]);
}

# PostgreSQL signals a worker with pg_terminate_backend() once it is connected (in its proc array).
sub wait_connected
{
	my ($pid) = @_;
	$node->poll_query_until('postgres', qq[SELECT count(*) FROM pg_stat_activity WHERE pid = $pid AND datname IS NOT NULL;], '1');
}

sub wait_log
{
	my ($pattern, $offset) = @_;
	$node->wait_for_log($pattern, $offset);
	return 1;
}

# pg_terminate_backend before attachSignalHandlers: PostgreSQL's own log line, then a restart.
my $offset = -s $node->logfile;
my $pid = launch('ending', 'ends by terminate', 4, 1000);
ok($pid > 0, 'a worker with a restart time of 1 s started');
wait_connected($pid);
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid);");
ok(wait_log(qr/terminating background worker "fixture" due to administrator command/, $offset),
	'pg_terminate_backend gives PostgreSQL\'s log line');
$node->poll_query_until('postgres',
	qq[SELECT count(*) FROM bgworker.workers() WHERE name = 'ends by terminate' AND status = 'Started' AND pid <> $pid;], '1');
pass('the worker has a new pid after its restart time');
my $handle = $node->safe_psql('postgres', q[SELECT handle FROM bgworker.workers() WHERE name = 'ends by terminate';]);
$node->safe_psql('postgres', qq[SELECT bgworker.terminate('$handle');]);
$node->poll_query_until('postgres', q[SELECT count(*) FROM bgworker.workers() WHERE name = 'ends by terminate';], '0');
pass('bgworker.terminate() ends it for good');

# pg_cancel_backend: the running statement fails with 57014 in JavaScript.
$offset = -s $node->logfile;
$pid = launch('cancelled', 'cancelled');
$node->poll_query_until('postgres', qq[SELECT count(*) FROM pg_stat_activity WHERE pid = $pid AND query ~ 'pg_sleep';], '1');
$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid);");
ok(wait_log(qr/cancelled with 57014: canceling statement due to user request/, $offset),
	'pg_cancel_backend reaches JavaScript as 57014');

# Transactions: a throw rolls back, 25P02 until rollback, a commit-time error surfaces.
$offset = -s $node->logfile;
launch('transactions', 'transactions');
ok(wait_log(qr/transactions: rows after a throw: 0/, $offset), 'a throw in transaction() rolls back');
ok(wait_log(qr/transactions: codes 22012,25P02,rethrown 25P02; next transaction gives 1/, $offset),
	'a failed statement leaves the transaction in 25P02 until it rolls back');
ok(wait_log(qr/transactions: commit failed with 23505/, $offset), 'a commit-time error surfaces');

# setLatch(pid) of another in-server worker sets that backend's latch.
$offset = -s $node->logfile;
my $waiter = launch('latched', 'latched');
wait_log(qr/latched: waiting/, $offset);
launch('setter', 'setter', $waiter);
ok(wait_log(qr/latched: woke after setLatch/, $offset), 'setLatch(pid) wakes another in-server worker');

# SELECT 1 through in-server SPI (a measure, not a test).
$offset = -s $node->logfile;
launch('select1', 'select1', 5000);
wait_log(qr/select1: n=5000/, $offset);
my ($measure) = slurp_file($node->logfile, $offset) =~ /(select1: n=5000 \S+ \S+)/;
note($measure);

# The exit matrix: none of them crash-restarts the server.
my $start_line = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time();');
$offset = -s $node->logfile;
for my $case ([0, 'returns'], [1, 'exits 1'], [2, 'throws'], [3, 'crashes'])
{
	launch('ending', "ending $case->[1]", $case->[0]);
}
$pid = launch('ending', 'ending killed', 4, 1000);
wait_connected($pid);
my @children = `pgrep -P $pid`;
chomp @children;
is(scalar(@children), 1, 'the worker has one Node child');
kill 'KILL', $children[0];
ok(wait_log(qr/its Node process \(PID $children[0]\) was terminated by signal 9/, $offset), 'SIGKILL of Node is logged');
$node->poll_query_until('postgres',
	q[SELECT count(*) FROM bgworker.workers() WHERE name = 'ending killed' AND status = 'Started';], '1');
ok(wait_log(qr/background worker "fixture" \(PID \d+\) exited with exit code 1/, $offset), 'exits are exit code 1');
$node->poll_query_until('postgres',
	q[SELECT count(*) FROM bgworker.workers() WHERE name IN ('ending returns', 'ending exits 1', 'ending throws', 'ending crashes');], '0');
is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time();'), $start_line, 'the server did not restart');
ok(!$node->log_contains(qr/terminating any other active server processes/, 0), 'no crash-restart of the server');
ok($node->log_contains(qr/background worker "fixture": thrown on purpose/, $offset), 'a throw is logged as an ERROR');

# A launch beyond max_worker_processes fails cleanly.
my ($rc, $stdout, $stderr);
my $failed = 0;
for my $i (1 .. 6)
{
	($rc, $stdout, $stderr) = $node->psql('postgres',
		qq[SELECT bgworker.launch('$fixture', 'idle', 'idle $i', 'fixture idle');]);
	if ($rc != 0) { $failed = 1; last; }
}
ok($failed, 'a launch beyond max_worker_processes fails');
like($stderr, qr/could not register background process "idle \d": no free background worker slot/, 'with a clear error');
is($node->safe_psql('postgres', 'SELECT 1;'), '1', 'the server serves on');

# DROP DATABASE ... WITH (FORCE) while a worker is connected to it.
$node->safe_psql('postgres', q[SELECT bgworker.terminate(handle) FROM bgworker.workers() WHERE kind = 'dynamic';]);
$node->poll_query_until('postgres', q[SELECT count(*) FROM bgworker.workers() WHERE kind = 'dynamic';], '0');
$node->safe_psql('postgres', 'CREATE DATABASE dropme;');
my $as = "$root/test/inserver/worker_spi_as.ts";
$pid = $node->safe_psql('postgres',
	qq[SELECT bgworker.launch('$as', 'worker_spi_main_as', 'worker_spi worker 20 as postgres in dropme', 'worker_spi', 20);]);
$node->poll_query_until('postgres', qq[SELECT datname FROM pg_stat_activity WHERE pid = $pid;], 'dropme');
$node->safe_psql('postgres', 'DROP DATABASE dropme WITH (FORCE);');
is($node->safe_psql('postgres', q[SELECT count(*) FROM pg_database WHERE datname = 'dropme';]), '0',
	'DROP DATABASE WITH (FORCE) completes while a worker is connected');

# kill -9 of the postmaster: no Node process is left a second later.
$offset = -s $node->logfile;
launch('idle', 'idle survivor');
wait_log(qr/idle worker idle survivor running/, $offset);
ok(scalar(BgworkerTest::node_pids($node)) >= 1, 'a Node process runs');
$node->kill9;
ok(BgworkerTest::no_node_left($node, 1000), 'no Node process 1 s after kill -9 of the postmaster');

done_testing();
