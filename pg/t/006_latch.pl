# setLatch(pid) of in-server workers that have no database session: PostgreSQL's BackendPidGetProc knows only
# the processes connected to a database, and such a latch was dropped. Whether the worker's function is
# entered (its backend signals its Node process) or its module still loads (PostgreSQL's SetLatch() on its
# backend, passed on once the function waits), it wakes; a pid of no PostgreSQL process is a WARNING.

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
my $latch = "$root/pg/t/fixtures/latch.ts";
my $slow = "$root/pg/t/fixtures/latch_slow.ts";
my $node = BgworkerTest::new_node('latch', "max_worker_processes = 6\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION bgworker;');

# Workers registered without database access (spi => false): none of them can connect.
sub launch
{
	my ($library, $function, $name, $arg, $wait) = @_;
	$arg //= 'NULL';
	$wait //= 'true';
	return $node->safe_psql('postgres',
		qq[SELECT bgworker.launch('$library', '$function', '$name', 'fixture', $arg, false, NULL, $wait);]);
}

# ----- its function entered -----
my $offset = -s $node->logfile;
my $waiter = launch($latch, 'waiter', 'unconnected');
ok($waiter > 0, 'a worker without database access started');
$node->wait_for_log(qr/unconnected: waiting/, $offset);
is($node->safe_psql('postgres', qq[SELECT count(*) FROM pg_stat_activity WHERE pid = $waiter AND datname IS NOT NULL;]),
	'0', 'it has no database session');
launch($latch, 'setter', 'setter of unconnected', $waiter);
$node->wait_for_log(qr/unconnected: woke after/, $offset);
like(slurp_file($node->logfile, $offset), qr/unconnected: woke after setLatch/,
	'setLatch(pid) from another unconnected worker wakes it');

# ----- its module still loading -----
$offset = -s $node->logfile;
my %before = map { $_ => 1 } BgworkerTest::node_pids($node);
is(launch($slow, 'waiter', 'loading', undef, 'false'), '', 'a worker whose module takes 4 s to load was launched');
my $backend;
for (my $waited = 0; $waited < 3000 && !$backend; $waited += 50)
{
	my ($new) = grep { !$before{$_} } BgworkerTest::node_pids($node);
	($backend) = slurp_file("/proc/$new/stat") =~ /\) \S (\d+)/ if $new;
	usleep(50_000) unless $backend;
}
ok($backend, "its backend is known (the parent of its Node process)");
is($node->safe_psql('postgres', q[SELECT status FROM bgworker.workers() WHERE name = 'loading';]),
	'NotYetStarted', 'its function is not entered yet');
launch($latch, 'setter', 'setter of loading', $backend);
$node->wait_for_log(qr/setter: set the latch of $backend/, $offset);
$node->wait_for_log(qr/loading: woke after/, $offset);
like(slurp_file($node->logfile, $offset), qr/loading: woke after setLatch/,
	'a latch set while its module loads wakes its first waitLatch()');

# ----- not a PostgreSQL process: the postmaster has no PGPROC -----
$offset = -s $node->logfile;
my ($postmaster) = slurp_file($node->data_dir . '/postmaster.pid') =~ /^(\d+)/;
launch($latch, 'setter', 'setter of the postmaster', $postmaster);
ok($node->wait_for_log(qr/WARNING: .*setLatch\($postmaster\): PID $postmaster is not a PostgreSQL process/, $offset),
	'setLatch(pid) of no PostgreSQL process is a WARNING in the server log');

$node->stop;
ok(BgworkerTest::no_node_left($node), 'no Node process is left');
done_testing();
